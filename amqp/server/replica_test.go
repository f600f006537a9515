package server

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/cluster/multiraft"
	"github.com/warren-mq/warren/queue"
)

func testReplica(t *testing.T) *replica {
	s := New(Config{})
	v := s.vhosts["/"]
	require.NotNil(t, v)
	r := newReplica(s, v, 7, []string{"a", "b", "c"})
	r.q = &Queue{Queue: queue.New(queue.Config{Name: "q", Args: amqp.Table{"x-queue-type": "quorum"}}), repl: r}
	t.Cleanup(r.q.Queue.Stop)
	return r
}

func enqueueEntry(i int) multiraft.Entry {
	hdr := amqp.AppendContentHeader(nil, uint64(len(fmt.Sprint(i))), &amqp.Properties{})
	msg := queue.NewMessage("", "q", hdr, []byte(fmt.Sprint(i)))
	return multiraft.Entry{Data: appendEnqueue(msg, -1)}
}

func batchEntry(ops ...any) multiraft.Entry {
	b := []byte{opBatch}
	for i := 0; i < len(ops); i += 2 {
		b = append(b, ops[i].(byte))
		b = binary.BigEndian.AppendUint64(b, uint64(ops[i+1].(int)))
		if ops[i].(byte) == 'R' {
			b = binary.BigEndian.AppendUint32(b, 3)
		}
	}
	return multiraft.Entry{Data: b}
}

// The state machine keeps the unsettled messages in log order with their
// return counts and the delivered watermark, and a snapshot restores them.
func TestQuorumStateMachine(t *testing.T) {
	r := testReplica(t)
	var es []multiraft.Entry
	for i := 1; i <= 10; i++ {
		es = append(es, enqueueEntry(i))
	}
	es = append(es, batchEntry(byte('S'), 2, byte('S'), 5, byte('D'), 4, byte('R'), 7, byte('F'), 9))
	r.sm.Apply(es)
	ids := func(sm *qsm) []string {
		var out []string
		for _, e := range sm.entries() {
			out = append(out, fmt.Sprintf("%d:%s:%d:%v", e.Seq, e.Msg.Body, e.Returns, e.Redelivered))
		}
		return out
	}
	want := []string{"1:1:0:true", "3:3:0:true", "4:4:0:true", "6:6:0:false", "7:7:3:true", "8:8:0:false"}
	require.Equal(t, want, ids(&r.sm))
	require.False(t, r.sm.SnapshotDue(100), "a short log is not compacted")
	require.True(t, r.sm.SnapshotDue(snapshotMin))

	snap, err := r.sm.Snapshot()
	require.NoError(t, err)
	r2 := testReplica(t)
	require.NoError(t, r2.sm.Restore(snap))
	require.Equal(t, want, ids(&r2.sm))
	// The next message after a restore gets the next id.
	r2.sm.Apply([]multiraft.Entry{enqueueEntry(11)})
	require.Equal(t, "11:11:0:false", ids(&r2.sm)[len(want)])
	require.Error(t, r2.sm.Restore(snap[:len(snap)-3]), "a cut snapshot is refused")
}
