package server

import (
	"math/rand/v2"
	"slices"

	"github.com/warren-mq/warren/amqp"
)

// Where a new queue of a cluster lives (its home node), as RabbitMQ's
// queue-leader-locator decides it: "client-local" (the default) on the node
// the declaring client is connected to; "balanced" on the running node
// homing the fewest queues (RabbitMQ picks at random beyond 1,000 queues;
// Warren always counts). The older queue-master-locator values map to
// these: "min-masters" is balanced, "random" a running node at random.
// The argument (x-queue-leader-locator, x-queue-master-locator) wins over
// the policy key (queue-leader-locator, queue-master-locator).

// locatorOf returns the locator for a queue about to be declared.
func (v *Vhost) locatorOf(name string, args amqp.Table) string {
	for _, k := range [...]string{"x-queue-leader-locator", "x-queue-master-locator"} {
		if s, ok := args[k].(string); ok {
			return s
		}
	}
	v.mu.RLock()
	p := v.policyFor("queues", name)
	v.mu.RUnlock()
	if p != nil {
		for _, k := range [...]string{"queue-leader-locator", "queue-master-locator"} {
			if s, ok := p.Definition[k].(string); ok {
				return s
			}
		}
	}
	return "client-local"
}

// locateQueue picks the home of a new queue by its locator: this node, or
// one of the running nodes.
func (s *Server) locateQueue(v *Vhost, name string, args amqp.Table) string {
	self := s.cfg.NodeName
	pl, ok := s.peers.(PeerLister)
	if !ok {
		return self
	}
	loc := v.locatorOf(name, args)
	if loc != "balanced" && loc != "min-masters" && loc != "random" {
		return self
	}
	nodes := append([]string{self}, pl.Others()...)
	if loc == "random" {
		return nodes[rand.IntN(len(nodes))]
	}
	homed := map[string]int{}
	for _, vh := range s.vhostList("") {
		vh.mu.RLock()
		for _, q := range vh.queues {
			h := q.Home()
			if h == "" {
				h = self
			}
			homed[h]++
		}
		vh.mu.RUnlock()
	}
	// Fewest queues; ties go to this node, then by name.
	slices.Sort(nodes[1:])
	best := nodes[0]
	for _, n := range nodes[1:] {
		if homed[n] < homed[best] {
			best = n
		}
	}
	return best
}
