package server

import (
	"context"
	"sync"
)

// The management API of a cluster's node answers for the whole cluster:
// its lists (queues with their home's figures, connections, channels,
// consumers) and totals gather every node's own. The broker carries those
// requests over the cluster connection (peerAPI frames); what they mean
// is the management API's business (SetPeerAPI).

const peerAPI = 12 // request: the management API's own payload

// PeerLister is the part of Peers that names the other nodes.
type PeerLister interface {
	// Others names the other nodes of the cluster that are reachable now.
	Others() []string
}

// SetPeerAPI installs the handler of other nodes' management requests.
// Call before Serve.
func (s *Server) SetPeerAPI(h func(req []byte) ([]byte, error)) { s.peerAPI.Store(&h) }

// AskPeers sends req to every other reachable node and returns the answers
// that came within ctx, by node.
func (s *Server) AskPeers(ctx context.Context, req []byte) map[string][]byte {
	pl, ok1 := s.peers.(PeerLister)
	pc, ok2 := s.peers.(PeerCaller)
	if !ok1 || !ok2 {
		return nil
	}
	payload := append([]byte{peerAPI}, req...)
	var mu sync.Mutex
	out := map[string][]byte{}
	var wg sync.WaitGroup
	for _, node := range pl.Others() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ans, err := pc.Call(ctx, node, payload)
			if err != nil || len(ans) == 0 {
				return // a node that does not answer is left out
			}
			mu.Lock()
			out[node] = ans
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// Clustered reports whether the broker is a node of a cluster.
func (s *Server) Clustered() bool { return s.meta != nil }
