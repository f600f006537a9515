package queue

import (
	"testing"
	"unsafe"

	"github.com/warren-mq/warren/amqp"
)

// NewMessage reads flags, delivery mode and priority from the raw header
// with or without the properties that come before them.
func TestNewMessageScansHeader(t *testing.T) {
	cases := []amqp.Properties{
		{},
		{Flags: amqp.FlagDeliveryMode, DeliveryMode: 2},
		{Flags: amqp.FlagPriority, Priority: 7},
		{Flags: amqp.FlagContentType | amqp.FlagContentEncoding | amqp.FlagHeaders | amqp.FlagDeliveryMode | amqp.FlagPriority | amqp.FlagMessageID,
			ContentType: "text/plain", ContentEncoding: "gzip", Headers: amqp.Table{"a": "b", "n": int32(3)}, DeliveryMode: 2, Priority: 9, MessageID: "m"},
		{Flags: amqp.FlagHeaders | amqp.FlagPriority, Headers: amqp.Table{}, Priority: 1},
	}
	for i, p := range cases {
		body := []byte("body")
		m := NewMessage("x", "k", amqp.AppendContentHeader(nil, uint64(len(body)), &p), body)
		if m.Flags() != p.Flags {
			t.Errorf("%d: flags %x, want %x", i, m.Flags(), p.Flags)
		}
		if m.Persistent() != (p.DeliveryMode == 2) {
			t.Errorf("%d: persistent %v", i, m.Persistent())
		}
		prio, ok := m.Priority()
		if ok != (p.Flags&amqp.FlagPriority != 0) || prio != p.Priority {
			t.Errorf("%d: priority %d %v, want %d", i, prio, ok, p.Priority)
		}
		if got := m.Props(); got.MessageID != p.MessageID || len(m.Headers()) != len(p.Headers) {
			t.Errorf("%d: props %+v", i, got)
		}
	}
	// A truncated header carries no properties rather than garbage.
	m := NewMessage("", "", []byte{0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10}, nil)
	if m.Persistent() || m.Flags() != 0 {
		t.Errorf("truncated header: flags %x", m.Flags())
	}
}

func TestNames(t *testing.T) {
	var n Names
	a := n.InternBytes([]byte("key"))
	b := n.Intern(string([]byte("key")))
	if a != b || unsafe.StringData(a) != unsafe.StringData(b) {
		t.Fatal("the second key is not the first one's copy")
	}
	if allocs := testing.AllocsPerRun(100, func() { n.InternBytes([]byte("key")) }); allocs != 0 {
		t.Errorf("InternBytes of a known key allocates %v times", allocs)
	}
	for i := 0; i < 2*maxNames; i++ {
		n.Intern(string(rune(i)))
	}
	if len(n.m) > maxNames {
		t.Errorf("holds %d names, more than %d", len(n.m), maxNames)
	}
}

// The sizes the lean message is built around: a deep queue holds one Entry
// and one Message per message.
func TestMessageSizes(t *testing.T) {
	if s := unsafe.Sizeof(Entry{}); s != 32 {
		t.Errorf("Entry is %d bytes, want 32", s)
	}
	if s := unsafe.Sizeof(Message{}); s > 96 {
		t.Errorf("Message is %d bytes, want at most 96", s)
	}
	if s := unsafe.Sizeof(chunk{}); s > 8192 {
		t.Errorf("a deque chunk is %d bytes, more than the 8 KiB size class", s)
	}
}
