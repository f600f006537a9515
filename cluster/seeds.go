package cluster

import (
	"context"
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"strings"
)

// NodeID is the ID of the node whose cluster address is addr, as it appears
// in --cluster-seeds (or as a joining node advertises it): the same string
// gives the same ID on every node, with no exchange needed before the first
// election. FNV-1a, never 0.
func NodeID(addr string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(addr))
	if id := h.Sum64(); id != 0 {
		return id
	}
	return 1
}

// ParseSeeds splits a seed list (commas or spaces) into host:port strings,
// each checked for a port.
func ParseSeeds(list []string) ([]string, error) {
	var out []string
	for _, item := range list {
		for _, s := range strings.FieldsFunc(item, func(r rune) bool { return r == ',' || r == ' ' }) {
			if _, port, err := net.SplitHostPort(s); err != nil || port == "" {
				return nil, fmt.Errorf("cluster seed %q: want host:port", s)
			}
			out = append(out, s)
		}
	}
	return out, nil
}

// selfSeed returns the seed that names this node: the one whose port is the
// cluster listener's and whose host resolves to an address of this machine
// (a Kubernetes pod's own DNS name, 127.0.0.1 on a laptop). When several
// match (several nodes on one machine must then differ in port), the first.
func selfSeed(ctx context.Context, seeds []string, listen net.Addr) (string, bool) {
	la, ok := listen.(*net.TCPAddr)
	if !ok {
		return "", false
	}
	local := localIPs()
	if !la.IP.IsUnspecified() {
		local = []net.IP{la.IP}
	}
	for _, s := range seeds {
		host, port, _ := net.SplitHostPort(s)
		if port != fmt.Sprint(la.Port) {
			continue
		}
		ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
		if err != nil {
			continue
		}
		for _, ip := range ips {
			for _, l := range local {
				if ip.IP.Equal(l) {
					return s, true
				}
			}
		}
	}
	return "", false
}

func localIPs() []net.IP {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	}
	var out []net.IP
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			out = append(out, n.IP)
		}
	}
	return out
}

// advertised is the address other nodes dial for this node when it is not
// among the seeds: the listener's, with an unspecified host replaced by the
// machine's name.
func advertised(listen net.Addr) string {
	la, ok := listen.(*net.TCPAddr)
	if !ok {
		return listen.String()
	}
	if la.IP.IsUnspecified() {
		if h, err := os.Hostname(); err == nil {
			return net.JoinHostPort(h, fmt.Sprint(la.Port))
		}
	}
	return la.String()
}
