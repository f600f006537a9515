package mgmt

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/amqp/server"
)

// Definitions in RabbitMQ's JSON format, both ways, so a topology exported
// from RabbitMQ imports into Warren and back.

type defUser struct {
	Name             string         `json:"name"`
	PasswordHash     string         `json:"password_hash"`
	Password         string         `json:"password,omitempty"`
	HashingAlgorithm string         `json:"hashing_algorithm"`
	Tags             any            `json:"tags"`
	Limits           map[string]any `json:"limits"`
}

type defVhost struct {
	Name     string         `json:"name"`
	Limits   []any          `json:"limits,omitempty"`
	Metadata map[string]any `json:"metadata,omitempty"`
}

type defPermission struct {
	User      string `json:"user"`
	Vhost     string `json:"vhost"`
	Configure string `json:"configure"`
	Write     string `json:"write"`
	Read      string `json:"read"`
}

type defQueue struct {
	Name       string         `json:"name"`
	Vhost      string         `json:"vhost,omitempty"`
	Durable    bool           `json:"durable"`
	AutoDelete bool           `json:"auto_delete"`
	Arguments  map[string]any `json:"arguments"`
}

type defExchange struct {
	Name       string         `json:"name"`
	Vhost      string         `json:"vhost,omitempty"`
	Type       string         `json:"type"`
	Durable    bool           `json:"durable"`
	AutoDelete bool           `json:"auto_delete"`
	Internal   bool           `json:"internal"`
	Arguments  map[string]any `json:"arguments"`
}

type defBinding struct {
	Source          string         `json:"source"`
	Vhost           string         `json:"vhost,omitempty"`
	Destination     string         `json:"destination"`
	DestinationType string         `json:"destination_type"`
	RoutingKey      string         `json:"routing_key"`
	Arguments       map[string]any `json:"arguments"`
}

type definitions struct {
	RabbitVersion    string          `json:"rabbit_version,omitempty"`
	RabbitMQVersion  string          `json:"rabbitmq_version,omitempty"`
	ProductName      string          `json:"product_name,omitempty"`
	ProductVersion   string          `json:"product_version,omitempty"`
	Users            []defUser       `json:"users,omitempty"`
	Vhosts           []defVhost      `json:"vhosts,omitempty"`
	Permissions      []defPermission `json:"permissions,omitempty"`
	TopicPermissions []any           `json:"topic_permissions,omitempty"`
	Parameters       []any           `json:"parameters"`
	GlobalParameters []any           `json:"global_parameters,omitempty"`
	Policies         []any           `json:"policies"`
	Queues           []defQueue      `json:"queues"`
	Exchanges        []defExchange   `json:"exchanges"`
	Bindings         []defBinding    `json:"bindings"`
}

func builtinExchange(name string) bool { return name == "" || strings.HasPrefix(name, "amq.") }

func (a *api) exportDefinitions(w http.ResponseWriter, r *http.Request) {
	vhost := var_(r, "vhost")
	if vhost != "" && !a.vhostExists(vhost) {
		notFound(w)
		return
	}
	d := definitions{Parameters: []any{}, Policies: []any{}, Queues: []defQueue{}, Exchanges: []defExchange{}, Bindings: []defBinding{}}
	// Per-vhost exports carry no vhost fields (RabbitMQ's shape).
	vh := func(v string) string {
		if vhost != "" {
			return ""
		}
		return v
	}
	d.RabbitVersion = server.RabbitVersion // in a per-vhost export too, as RabbitMQ
	if vhost == "" {
		d.RabbitMQVersion = server.RabbitVersion
		d.ProductName, d.ProductVersion = "RabbitMQ", server.RabbitVersion
		d.TopicPermissions, d.GlobalParameters = []any{}, []any{}
		d.Users, d.Vhosts, d.Permissions = []defUser{}, []defVhost{}, []defPermission{}
		for _, u := range a.b.Users() {
			d.Users = append(d.Users, defUser{Name: u.Name, PasswordHash: u.PasswordHash,
				HashingAlgorithm: "rabbit_password_hashing_sha256", Tags: tagsOrEmpty(u.Tags), Limits: map[string]any{}})
			for _, v := range sortedKeys(u.Permissions) {
				p := u.Permissions[v]
				d.Permissions = append(d.Permissions, defPermission{User: u.Name, Vhost: v, Configure: p.Configure, Write: p.Write, Read: p.Read})
			}
		}
		for _, v := range a.b.VhostNames() {
			d.Vhosts = append(d.Vhosts, defVhost{Name: v, Limits: []any{}, Metadata: map[string]any{"description": "", "tags": []string{}}})
		}
	}
	if vhost == "" {
		for _, g := range a.b.GlobalParameters() {
			d.GlobalParameters = append(d.GlobalParameters, item{"name": g.Name, "value": g.Value})
		}
	}
	// Parameters and policies keep their vhost in a per-vhost export too
	// (RabbitMQ's shape).
	for _, it := range a.vhostParameters(principal{tags: []string{"administrator"}}, "", vhost) {
		d.Parameters = append(d.Parameters, it)
	}
	for _, p := range a.b.Policies(vhost) {
		d.Policies = append(d.Policies, policyItem(p))
	}
	for _, q := range a.b.Queues(vhost) {
		if q.Exclusive {
			continue
		}
		d.Queues = append(d.Queues, defQueue{Name: q.Name, Vhost: vh(q.Vhost), Durable: q.Durable, AutoDelete: q.AutoDelete,
			Arguments: argsOrEmpty(q.Arguments).(map[string]any)})
	}
	for _, x := range a.b.Exchanges(vhost) {
		if builtinExchange(x.Name) {
			continue
		}
		d.Exchanges = append(d.Exchanges, defExchange{Name: x.Name, Vhost: vh(x.Vhost), Type: x.Type, Durable: x.Durable,
			AutoDelete: x.AutoDelete, Internal: x.Internal, Arguments: argsOrEmpty(x.Arguments).(map[string]any)})
	}
	for _, b := range a.b.Bindings(vhost) {
		if b.Source == "" {
			continue // the default exchange's implicit bindings
		}
		d.Bindings = append(d.Bindings, defBinding{Source: b.Source, Vhost: vh(b.Vhost), Destination: b.Destination,
			DestinationType: b.DestinationType, RoutingKey: b.RoutingKey, Arguments: argsOrEmpty(b.Arguments).(map[string]any)})
	}
	if r.URL.Query().Get("download") != "" {
		w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", r.URL.Query().Get("download")))
	}
	writeJSON(w, http.StatusOK, d)
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	for i := 1; i < len(ks); i++ {
		for j := i; j > 0 && ks[j] < ks[j-1]; j-- {
			ks[j], ks[j-1] = ks[j-1], ks[j]
		}
	}
	return ks
}

// importDefinitions applies a document as RabbitMQ does: vhosts, users,
// permissions and policies overwrite; queues and exchanges that exist are
// left exactly as they are; bindings are added once. Not transactional:
// what came before a failing object stays.
func (a *api) importDefinitions(w http.ResponseWriter, r *http.Request) {
	var d definitions
	if err := readBody(r, &d); err != nil {
		badBody(w, err)
		return
	}
	if err := a.importDefs(&d, var_(r, "vhost")); err != nil {
		badRequest(w, err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) importDefs(d *definitions, only string) error {
	vhostOf := func(v string) string {
		if only != "" {
			return only
		}
		return v
	}
	if only != "" && !a.vhostExists(only) {
		return fmt.Errorf("vhost '%s' does not exist", only)
	}
	if only == "" {
		for _, v := range d.Vhosts {
			if _, err := a.b.AddVhost(v.Name); err != nil {
				return fmt.Errorf("vhost '%s': %v", v.Name, err)
			}
		}
		for _, u := range d.Users {
			tags, err := parseTags(orEmpty(u.Tags))
			if err != nil {
				return fmt.Errorf("user '%s': %v", u.Name, err)
			}
			body := map[string]any{"password_hash": u.PasswordHash, "hashing_algorithm": u.HashingAlgorithm}
			if u.Password != "" {
				body = map[string]any{"password": u.Password}
			}
			if _, err := a.putUserFrom(u.Name, body, tags); err != nil {
				return fmt.Errorf("user '%s': %v", u.Name, err)
			}
		}
		for _, p := range d.Permissions {
			if err := a.b.SetPermission(p.User, p.Vhost, server.Permission{Configure: p.Configure, Write: p.Write, Read: p.Read}); err != nil {
				return fmt.Errorf("permission of '%s' on vhost '%s': %v", p.User, p.Vhost, err)
			}
		}
	}
	if only == "" {
		for _, raw := range d.GlobalParameters {
			m, _ := raw.(map[string]any)
			name, _ := m["name"].(string)
			value, ok := m["value"]
			if name == "" || !ok {
				return fmt.Errorf("a global parameter needs a name and a value")
			}
			// This broker keeps its own identity; every other global
			// parameter is taken as given.
			if name != "internal_cluster_id" {
				if _, err := a.b.PutGlobalParameter(name, value); err != nil {
					return fmt.Errorf("global parameter '%s': %v", name, err)
				}
			}
		}
	}
	var later []server.Parameter // parameters of components
	for _, raw := range d.Parameters {
		m, _ := raw.(map[string]any)
		component, _ := m["component"].(string)
		v, _ := m["vhost"].(string)
		if component != limitsComponent {
			// After the topology: a shovel declares a queue it finds
			// missing, which must not be before the document's own.
			name, _ := m["name"].(string)
			later = append(later, server.Parameter{Component: component, Vhost: vhostOf(v), Name: name, Value: m["value"]})
			continue
		}
		limits, err := limitsFrom(m["value"])
		if err != nil {
			return fmt.Errorf("vhost-limits of vhost '%s': %v", vhostOf(v), err)
		}
		for _, n := range slices.Sorted(maps.Keys(limits)) {
			if err := a.b.SetVhostLimit(vhostOf(v), n, limits[n]); err != nil {
				return fmt.Errorf("vhost-limits of vhost '%s': %v", vhostOf(v), err)
			}
		}
	}
	for _, raw := range d.Policies {
		m, ok := raw.(map[string]any)
		if !ok {
			return fmt.Errorf("a policy must be an object")
		}
		v, _ := m["vhost"].(string)
		name, _ := m["name"].(string)
		p, err := policyFrom(vhostOf(v), name, m)
		if err != nil {
			return fmt.Errorf("policy '%s': %v", name, err)
		}
		if _, err := a.b.PutPolicy(p); err != nil {
			return fmt.Errorf("policy '%s' in vhost '%s': %v", name, p.Vhost, err)
		}
	}
	sessions := map[string]*server.Direct{}
	defer func() {
		for _, s := range sessions {
			s.Close()
		}
	}()
	session := func(v string) (*server.Direct, error) {
		if s, ok := sessions[v]; ok {
			return s, nil
		}
		s, err := a.b.OpenInternalDirect(v)
		if err != nil {
			return nil, fmt.Errorf("vhost '%s' does not exist", v)
		}
		sessions[v] = s
		return s, nil
	}
	for _, x := range d.Exchanges {
		v := vhostOf(x.Vhost)
		if _, ok := a.b.Exchange(v, x.Name); ok && v != "" {
			continue // existing exchanges stay as they are
		}
		s, err := session(v)
		if err != nil {
			return err
		}
		args, err := tableFrom(x.Arguments)
		if err != nil {
			return fmt.Errorf("exchange '%s': %v", x.Name, err)
		}
		if _, err := s.Call(&amqp.ExchangeDeclare{Exchange: x.Name, Type: x.Type, Durable: x.Durable,
			AutoDelete: x.AutoDelete, Internal: x.Internal, Arguments: args}); err != nil {
			return fmt.Errorf("exchange '%s' in vhost '%s': %s", x.Name, v, reasonOf(err))
		}
	}
	for _, q := range d.Queues {
		v := vhostOf(q.Vhost)
		if _, ok := a.b.Queue(v, q.Name); ok && v != "" {
			continue
		}
		s, err := session(v)
		if err != nil {
			return err
		}
		args, err := tableFrom(q.Arguments)
		if err != nil {
			return fmt.Errorf("queue '%s': %v", q.Name, err)
		}
		if _, err := s.Call(&amqp.QueueDeclare{Queue: q.Name, Durable: q.Durable, AutoDelete: q.AutoDelete, Arguments: args}); err != nil {
			return fmt.Errorf("queue '%s' in vhost '%s': %s", q.Name, v, reasonOf(err))
		}
	}
	for _, b := range d.Bindings {
		v := vhostOf(b.Vhost)
		s, err := session(v)
		if err != nil {
			return err
		}
		args, err := tableFrom(b.Arguments)
		if err != nil {
			return fmt.Errorf("binding: %v", err)
		}
		var m amqp.Method = &amqp.QueueBind{Queue: b.Destination, Exchange: b.Source, RoutingKey: b.RoutingKey, Arguments: args}
		switch b.DestinationType {
		case "queue":
		case "exchange":
			m = &amqp.ExchangeBind{Destination: b.Destination, Source: b.Source, RoutingKey: b.RoutingKey, Arguments: args}
		default:
			return fmt.Errorf("binding destination_type must be queue or exchange, got %q", b.DestinationType)
		}
		if _, err := s.Call(m); err != nil {
			return fmt.Errorf("binding from '%s' to %s '%s' in vhost '%s': %s", b.Source, b.DestinationType, b.Destination, v, reasonOf(err))
		}
	}
	for _, p := range later {
		if _, err := a.b.PutParameter(p); err != nil {
			return fmt.Errorf("Validation failed\n\n%v\n", err)
		}
	}
	return nil
}

func orEmpty(v any) any {
	if v == nil {
		return ""
	}
	return v
}

// reasonOf strips the "NAME - " prefix of an AMQP error text.
func reasonOf(err error) string {
	if ae, ok := err.(*amqp.Error); ok {
		if i := strings.Index(ae.Text, " - "); i >= 0 {
			return ae.Text[i+3:]
		}
		return ae.Text
	}
	return err.Error()
}
