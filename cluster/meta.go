package cluster

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/warren-mq/warren/cluster/multiraft"
)

// MetaGroup is the Raft group ID of the metadata group.
const MetaGroup = 1

// Broker is what the metadata group replicates into: the broker core of
// this node (amqp/server). Commands are the broker's own binary or JSON
// records; the cluster only orders them.
type Broker interface {
	// ApplyMeta applies one committed metadata command on this node and
	// returns its result (the broker's encoding, errors included). It runs
	// on the Raft ready loop, for every node's copy of the log, in order.
	ApplyMeta(index uint64, cmd []byte) []byte
	// MetaApplied is the index of the last command the broker has applied
	// and stored: entries at or below it are skipped when the log is
	// replayed at startup.
	MetaApplied() uint64
	// HandlePeer takes a payload another node's broker sent (KindBroker);
	// reply is set for a request and must be called once. It runs on the
	// connection's reader and must not block.
	HandlePeer(from string, payload []byte, reply func([]byte, error))
	// PeerDown is told when the connection to a node is lost.
	PeerDown(node string)
}

// Member is one node of the cluster as the metadata group records it.
type Member struct {
	ID   uint64 `json:"id"`
	Name string `json:"name"` // warren@host
	Addr string `json:"addr"` // cluster (inter-node) address
	AMQP string `json:"amqp,omitempty"`
	HTTP string `json:"http,omitempty"`
	// Seed: the member was named by --cluster-seeds at formation.
	Seed bool `json:"seed,omitempty"`
}

// command is one metadata log entry. Membership is the cluster's own
// (JSON: rare, small); broker commands are opaque bytes.
type command struct {
	Op     string  `json:"op"` // member, forget, broker
	Member *Member `json:"member,omitempty"`
	ID     uint64  `json:"id,omitempty"`
	Broker []byte  `json:"broker,omitempty"`
}

// metaSM is the metadata group's state machine: the member list here, and
// the broker's definitions through Broker.
type metaSM struct {
	broker  Broker
	onPeers func(map[uint64]Member) // called after the member list changed

	mu      sync.Mutex
	members map[uint64]Member // guarded by mu
	changed time.Time         // guarded by mu
}

func newMetaSM(b Broker, seeds []string, onPeers func(map[uint64]Member)) *metaSM {
	sm := &metaSM{broker: b, onPeers: onPeers, members: map[uint64]Member{}}
	for _, s := range seeds {
		id := NodeID(s)
		sm.members[id] = Member{ID: id, Addr: s, Seed: true}
	}
	return sm
}

func (sm *metaSM) Apply(entries []multiraft.Entry) []multiraft.Result {
	out := make([]multiraft.Result, len(entries))
	for i, e := range entries {
		var c command
		if err := json.Unmarshal(e.Data, &c); err != nil {
			out[i].Err = fmt.Errorf("cluster: undecodable metadata entry %d: %w", e.Index, err)
			continue
		}
		switch c.Op {
		case "member":
			if c.Member != nil {
				sm.mu.Lock()
				sm.members[c.Member.ID] = *c.Member
				sm.changed = time.Now()
				m := maps.Clone(sm.members)
				sm.mu.Unlock()
				sm.onPeers(m)
			}
		case "forget":
			sm.mu.Lock()
			delete(sm.members, c.ID)
			sm.changed = time.Now()
			m := maps.Clone(sm.members)
			sm.mu.Unlock()
			sm.onPeers(m)
		case "broker":
			if sm.broker == nil || e.Index <= sm.broker.MetaApplied() {
				continue // already applied and stored before a restart
			}
			out[i].Value = sm.broker.ApplyMeta(e.Index, c.Broker)
		}
	}
	return out
}

// Snapshot carries the member list; the broker's definitions are in its own
// store. The metadata group is configured never to compact below what the
// broker has stored (see Node), so a snapshot is only a restart shortcut.
func (sm *metaSM) Snapshot() ([]byte, error) {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	return json.Marshal(slices.Collect(maps.Values(sm.members)))
}

func (sm *metaSM) Restore(data []byte) error {
	var ms []Member
	if err := json.Unmarshal(data, &ms); err != nil {
		return err
	}
	sm.mu.Lock()
	sm.members = map[uint64]Member{}
	for _, m := range ms {
		sm.members[m.ID] = m
	}
	m := maps.Clone(sm.members)
	sm.mu.Unlock()
	sm.onPeers(m)
	return nil
}

func (sm *metaSM) memberList() []Member {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	ms := slices.Collect(maps.Values(sm.members))
	slices.SortFunc(ms, func(a, b Member) int {
		if a.Addr < b.Addr {
			return -1
		}
		if a.Addr > b.Addr {
			return 1
		}
		return 0
	})
	return ms
}

// memberByName returns the member named name.
func (sm *metaSM) memberByName(name string) (Member, bool) {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	for _, m := range sm.members {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

// member returns the member with id.
func (sm *metaSM) member(id uint64) (Member, bool) {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	m, ok := sm.members[id]
	return m, ok
}
