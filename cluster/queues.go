package cluster

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/warren-mq/warren/cluster/multiraft"
)

// The Raft groups of replicated queues (quorum queues, and streams: one
// group per stream, whose state machine appends to the member's stream log)
// run on the node's multiraft host next to the metadata group: the same
// write-ahead log, the same connection per peer. The broker (amqp/server)
// owns what a group's log means; the node maps its members' names to node
// IDs.

// StartQueueGroup starts this node's member of a queue's group
// (server.QueueGroups): a new group of the named members, or the one the
// write-ahead log holds; with join, an empty member for the leader to add.
func (n *Node) StartQueueGroup(id uint64, members []string, join bool, sm multiraft.StateMachine) (*QueueGroup, error) {
	if id == MetaGroup {
		return nil, fmt.Errorf("cluster: group %d is the metadata group", id)
	}
	peers := make([]uint64, 0, len(members))
	for _, name := range members {
		m, ok := n.sm.memberByName(name)
		if !ok {
			return nil, fmt.Errorf("cluster: queue group %d: no member node %q", id, name)
		}
		peers = append(peers, m.ID)
	}
	if join {
		peers = nil
	}
	g, err := n.host.StartGroup(id, peers, sm)
	if err != nil {
		return nil, err
	}
	return &QueueGroup{g: g, n: n}, nil
}

// StopQueueGroup stops this node's member of a queue's group and drops its
// log (the queue was deleted).
func (n *Node) StopQueueGroup(id uint64) {
	if id == MetaGroup {
		return
	}
	if err := n.host.RemoveGroup(id); err != nil {
		n.log.Debug("removing a queue's group", zap.Uint64("group", id), zap.Error(err))
	}
}

// QueueGroup is this node's member of one queue's group
// (server.QueueGroup).
type QueueGroup struct {
	g *multiraft.Group
	n *Node
}

// ProposeAsync proposes an entry without waiting (multiraft.Group).
func (q QueueGroup) ProposeAsync(data []byte, done func(any, error)) error {
	return q.g.ProposeAsync(data, done)
}

// Leader names the leader's node ("" while none is known).
func (q QueueGroup) Leader() string {
	id, local := q.g.Leader()
	if local {
		return q.n.cfg.NodeName
	}
	if id == 0 {
		return ""
	}
	m, ok := q.n.sm.member(id)
	if !ok {
		return ""
	}
	return m.Name
}

// LeaderChanged is closed at the next leader change.
func (q QueueGroup) LeaderChanged() <-chan struct{} { return q.g.LeaderChanged() }

// Campaign starts an election now.
func (q QueueGroup) Campaign() error { return q.g.Campaign() }

// AddMember adds the named node to the group (on its leader).
func (q QueueGroup) AddMember(ctx context.Context, node string) error {
	m, ok := q.n.sm.memberByName(node)
	if !ok {
		return fmt.Errorf("cluster: no member node %q", node)
	}
	return q.g.AddNode(ctx, m.ID)
}

// RemoveMember removes the named node from the group (on its leader).
func (q QueueGroup) RemoveMember(ctx context.Context, node string) error {
	m, ok := q.n.sm.memberByName(node)
	if !ok {
		return fmt.Errorf("cluster: no member node %q", node)
	}
	return q.g.RemoveNode(ctx, m.ID)
}

// Term is the group's current term here.
func (q QueueGroup) Term() uint64 { return q.g.Term() }

// ForceCampaign starts an election that voters grant within the old
// leader's lease (multiraft.Group.ForceCampaign).
func (q QueueGroup) ForceCampaign() { q.g.ForceCampaign() }

// TransferLeadership hands the leadership to the named member.
func (q QueueGroup) TransferLeadership(node string) {
	if m, ok := q.n.sm.memberByName(node); ok {
		q.g.TransferLeadership(m.ID)
	}
}

// Members names every member node of the cluster, reachable or not
// (server.MemberLister); complete is false while some member has not
// announced its name yet (a cluster just formed).
func (n *Node) Members() (names []string, complete bool) {
	complete = true
	for _, m := range n.sm.memberList() {
		if m.Name != "" {
			names = append(names, m.Name)
		} else {
			complete = false
		}
	}
	return names, complete
}
