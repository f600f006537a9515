package multiraft

import (
	pb "go.etcd.io/raft/v3/raftpb"
)

// Term is the group's current Raft term on this node.
func (g *Group) Term() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.rn.BasicStatus()
	return st.GetTerm()
}

// ForceCampaign makes this node campaign now the way a leadership transfer
// does (raft's MsgTimeoutNow): the other voters grant their votes even if
// they heard from the old leader within the election timeout (CheckQuorum's
// lease would have them ignore an ordinary campaign until then). For a
// leader known to be gone (its node's connection dropped), it saves the
// election timeout. Votes still need an up-to-date log, so safety holds; a
// leader that was alive after all just loses its leadership.
func (g *Group) ForceCampaign() {
	g.mu.Lock()
	if g.stopErr == nil {
		g.wakeLocked()
		g.rn.Step(&pb.Message{Type: pb.MsgTimeoutNow.Enum(), To: new(g.h.cfg.NodeID), From: new(g.lead)})
	}
	g.mu.Unlock()
	g.h.markReady(g)
}
