package federation

import (
	"time"

	"github.com/warren-mq/warren/shovel"
)

// Components are the runtime-parameter components upstreams and upstream
// sets are stored under.
const (
	UpstreamComponent = "federation-upstream"
	SetComponent      = "federation-upstream-set"
)

// Ack modes (RabbitMQ's ack-mode values).
const (
	OnConfirm = "on-confirm"
	OnPublish = "on-publish"
	NoAck     = "no-ack"
)

// Upstream is one upstream as a link uses it: a federation-upstream
// parameter, with the keys an upstream set's element overrides.
type Upstream struct {
	Name           string
	URIs           []string
	Exchange       string // "" for the federated exchange's own name
	Queue          string // "" for the federated queue's own name
	ConsumerTag    string
	Prefetch       int
	ReconnectDelay time.Duration
	MaxHops        int64
	Expires        int64 // ms; 0 for none
	MessageTTL     int64 // ms; -1 for none
	TrustUserID    bool
	AckMode        string
	// KeepResources is resource-cleanup-mode "never": a stopped exchange
	// link leaves its upstream queue and exchange (by default it deletes
	// them, as RabbitMQ's does on a clean stop).
	KeepResources bool
}

// sharedChecks are the keys of both components (the plugin's
// shared_validation in 3.10), in its order.
var sharedChecks = []shovel.Check{
	{Key: "exchange", Kind: "binary"},
	{Key: "queue", Kind: "binary"},
	{Key: "consumer-tag", Kind: "binary"},
	{Key: "prefetch-count", Kind: "number"},
	{Key: "reconnect-delay", Kind: "number"},
	{Key: "max-hops", Kind: "number"},
	{Key: "expires", Kind: "number"},
	{Key: "message-ttl", Kind: "number"},
	{Key: "trust-user-id", Kind: "boolean"},
	{Key: "ack-mode", Kind: "enum", Enum: []string{NoAck, OnPublish, OnConfirm}},
	{Key: "resource-cleanup-mode", Kind: "enum", Enum: []string{"default", "never"}},
	{Key: "ha-policy", Kind: "binary"},
	{Key: "bind-nowait", Kind: "boolean"},
	{Key: "channel-use-mode", Kind: "enum", Enum: []string{"multiple", "single"}},
}

// ValidateUpstream checks a federation-upstream value as RabbitMQ 3.10.
func ValidateUpstream(name string, value any) error {
	m, ok := value.(map[string]any)
	if !ok {
		return shovel.Refuse("%s not a list %s", name, shovel.Term(value))
	}
	return shovel.ValidateProplist(name, append([]shovel.Check{{Key: "uri", Kind: "uri", Mandatory: true}}, sharedChecks...), m)
}

// ValidateSet checks a federation-upstream-set value: a list of objects,
// each naming an upstream and overriding its keys.
func ValidateSet(name string, value any) error {
	l, ok := value.([]any)
	if !ok {
		return shovel.Refuse("%s not a list %s", name, shovel.Term(value))
	}
	for _, e := range l {
		m, ok := e.(map[string]any)
		if !ok {
			return shovel.Refuse("%s not a list %s", name, shovel.Term(e))
		}
		checks := append([]shovel.Check{{Key: "upstream", Kind: "binary", Mandatory: true}}, sharedChecks...)
		if err := shovel.ValidateProplist(name, checks, m); err != nil {
			return err
		}
	}
	return nil
}

// upstreamOf reads an upstream from its parameter u and the set element
// over it (nil for none), as rabbit_federation_upstream:from_upstream_or_set
// does: the set's keys win, then the upstream's, then the defaults.
func upstreamOf(name string, u, over map[string]any) *Upstream {
	get := func(k string) any {
		if v, ok := over[k]; ok {
			return v
		}
		return u[k]
	}
	str := func(k, def string) string {
		if s, ok := get(k).(string); ok {
			return s
		}
		return def
	}
	num := func(k string, def float64) float64 {
		if n, ok := shovel.Number(get(k)); ok {
			return n
		}
		return def
	}
	up := &Upstream{
		Name:           name,
		Exchange:       str("exchange", ""),
		Queue:          str("queue", ""),
		ConsumerTag:    str("consumer-tag", "federation-link-"+name),
		Prefetch:       int(min(max(num("prefetch-count", 1000), 0), 65535)),
		ReconnectDelay: time.Duration(max(num("reconnect-delay", 5), 0) * float64(time.Second)),
		MaxHops:        int64(num("max-hops", 1)),
		Expires:        int64(num("expires", 0)),
		MessageTTL:     int64(num("message-ttl", -1)),
		AckMode:        str("ack-mode", OnConfirm),
	}
	up.TrustUserID, _ = get("trust-user-id").(bool)
	up.KeepResources = str("resource-cleanup-mode", "default") == "never"
	switch v := get("uri").(type) {
	case string:
		up.URIs = []string{v}
	case []any:
		for _, e := range v {
			if s, ok := e.(string); ok {
				up.URIs = append(up.URIs, s)
			}
		}
	}
	return up
}

// equal reports whether two upstreams are the same settings.
func (u *Upstream) equal(o *Upstream) bool {
	if u == nil || o == nil {
		return u == o
	}
	if len(u.URIs) != len(o.URIs) {
		return false
	}
	for i := range u.URIs {
		if u.URIs[i] != o.URIs[i] {
			return false
		}
	}
	type settings struct {
		name, exchange, queue, tag, ack string
		prefetch                        int
		delay                           time.Duration
		hops, expires, ttl              int64
		trust, keep                     bool
	}
	of := func(x *Upstream) settings {
		return settings{x.Name, x.Exchange, x.Queue, x.ConsumerTag, x.AckMode, x.Prefetch, x.ReconnectDelay, x.MaxHops, x.Expires, x.MessageTTL, x.TrustUserID, x.KeepResources}
	}
	return of(u) == of(o)
}
