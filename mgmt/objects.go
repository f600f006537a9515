package mgmt

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/amqp/server"
)

// sample is one reading of the broker's counters, for rates.
type sample struct {
	at time.Time
	t  server.Totals
}

// rateState keeps recent samples of the broker's counters.
type rateState struct {
	b       *server.Server
	mu      sync.Mutex
	samples []sample // newest last
}

func (rs *rateState) sampleEvery(d time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			rs.take()
		case <-stop:
			return
		}
	}
}

// take records a sample and returns it with the rates over the last ~5 s
// (RabbitMQ's default statistics interval).
func (rs *rateState) take() (server.Totals, map[string]float64) {
	now := sample{at: time.Now(), t: rs.b.Totals()}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	a := rs
	a.samples = append(a.samples, now)
	// Keep samples from the last 10 s, at most one per 100 ms.
	cut := 0
	for cut < len(a.samples)-1 && now.at.Sub(a.samples[cut].at) > 10*time.Second {
		cut++
	}
	a.samples = a.samples[cut:]
	if n := len(a.samples); n >= 3 && a.samples[n-2].at.Sub(a.samples[n-3].at) < 100*time.Millisecond {
		a.samples = append(a.samples[:n-2], a.samples[n-1])
	}
	base := a.samples[0]
	for _, s := range a.samples {
		if now.at.Sub(s.at) >= 5*time.Second {
			base = s
		}
	}
	r := map[string]float64{}
	dt := now.at.Sub(base.at).Seconds()
	if dt > 0 {
		per := func(a, b uint64) float64 { return float64(a-b) / dt }
		r["publish"] = per(now.t.Published, base.t.Published)
		r["confirm"] = per(now.t.Confirmed, base.t.Confirmed)
		r["return_unroutable"] = per(now.t.Returned, base.t.Returned)
		r["deliver_get"] = per(now.t.Delivered, base.t.Delivered)
		r["redeliver"] = per(now.t.Redelivered, base.t.Redelivered)
		r["ack"] = per(now.t.Acked, base.t.Acked)
	}
	return now.t, r
}

func stat(m map[string]any, name string, total uint64, rates map[string]float64) {
	m[name] = total
	m[name+"_details"] = map[string]any{"rate": rates[name]}
}

func (a *api) overview(w http.ResponseWriter, r *http.Request) {
	t, rates := a.rates.take()
	ms := map[string]any{}
	stat(ms, "publish", t.Published, rates)
	stat(ms, "confirm", t.Confirmed, rates)
	stat(ms, "return_unroutable", t.Returned, rates)
	stat(ms, "deliver_get", t.Delivered, rates)
	stat(ms, "redeliver", t.Redelivered, rates)
	stat(ms, "ack", t.Acked, rates)
	if a.cluster != nil {
		// The whole cluster's objects and messages (message rates stay
		// this node's).
		p := who(r)
		t.Connections = len(a.gather(r, peerList{List: "connections"}, a.connectionItems(p, "")))
		t.Channels = len(a.gather(r, peerList{List: "channels"}, a.channelItems(p, "", "")))
		t.Consumers = len(a.gather(r, peerList{List: "consumers"}, a.consumerItems(p, "")))
		qs := a.gather(r, peerList{List: "queues"}, a.queueItems(p, ""))
		t.Queues, t.Ready, t.Unacked = len(qs), 0, 0
		for _, q := range qs {
			t.Ready += toInt(q["messages_ready"])
			t.Unacked += toInt(q["messages_unacknowledged"])
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"management_version":        server.RabbitVersion,
		"rabbitmq_version":          server.RabbitVersion,
		"product_version":           server.RabbitVersion,
		"product_name":              "RabbitMQ",
		"erlang_version":            runtime.Version(),
		"cluster_name":              a.clusterName(),
		"node":                      a.nodeName,
		"rates_mode":                "basic",
		"statistics_db_event_queue": 0,
		"object_totals": map[string]any{
			"connections": t.Connections, "channels": t.Channels, "exchanges": t.Exchanges,
			"queues": t.Queues, "consumers": t.Consumers,
		},
		"queue_totals": map[string]any{
			"messages": t.Ready + t.Unacked, "messages_ready": t.Ready, "messages_unacknowledged": t.Unacked,
		},
		"message_stats":  ms,
		"listeners":      a.listeners(),
		"contexts":       []any{map[string]any{"node": a.nodeName, "description": "RabbitMQ Management", "path": "/"}},
		"exchange_types": exchangeTypes,
	})
}

func (a *api) whoami(w http.ResponseWriter, r *http.Request) {
	p := who(r)
	writeJSON(w, http.StatusOK, map[string]any{"name": p.name, "tags": tagsOrEmpty(p.tags)})
}

func tagsOrEmpty(t []string) []string {
	if t == nil {
		return []string{}
	}
	return t
}

func (a *api) nodeInfo() map[string]any {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	n := map[string]any{
		"name": a.nodeName, "type": "disc", "running": true, "mem_used": ms.Sys,
		"mem_alarm": contains(a.b.Alarms(), "memory"), "disk_free_alarm": contains(a.b.Alarms(), "disk"),
		"proc_used": runtime.NumGoroutine(), "processors": runtime.NumCPU(), "uptime": time.Since(started).Milliseconds(),
	}
	a.addMemory(n)
	return n
}

var started = time.Now()

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if strings.Contains(x, s) {
			return true
		}
	}
	return false
}

func (a *api) nodes(w http.ResponseWriter, r *http.Request) {
	writeList(w, r, a.clusterNodes())
}

func (a *api) node(w http.ResponseWriter, r *http.Request) {
	for _, n := range a.clusterNodes() {
		if n["name"] == var_(r, "node") {
			writeJSON(w, http.StatusOK, n)
			return
		}
	}
	notFound(w)
}

func (a *api) healthAlarms(w http.ResponseWriter, _ *http.Request) {
	if alarms := a.b.Alarms(); len(alarms) > 0 {
		list := make([]map[string]any, len(alarms))
		for i, al := range alarms {
			list[i] = map[string]any{"node": a.nodeName, "resource": al}
		}
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{
			"status": "failed", "reason": "resource alarm(s) in effect in the cluster", "alarms": list})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
}

// aliveness declares aliveness-test, publishes a message to it and gets it
// back, as RabbitMQ's (deprecated but still used) endpoint does.
func (a *api) aliveness(w http.ResponseWriter, r *http.Request) {
	d := a.direct(w, r, var_(r, "vhost"))
	if d == nil {
		return
	}
	defer d.Close()
	fail := func(err error) {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "failed", "reason": err.Error()})
	}
	if _, err := d.Call(&amqp.QueueDeclare{Queue: "aliveness-test"}); err != nil {
		fail(err)
		return
	}
	if _, err := d.Publish(&amqp.BasicPublish{RoutingKey: "aliveness-test"}, amqp.Properties{}, []byte("test_message")); err != nil {
		fail(err)
		return
	}
	rep, err := d.Call(&amqp.BasicGet{Queue: "aliveness-test", NoAck: true})
	if err != nil {
		fail(err)
		return
	}
	if _, ok := rep.Method.(*amqp.BasicGetOk); !ok || string(rep.Body) != "test_message" {
		fail(errors.New("aliveness-test message did not come back"))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
}

// --- connections, channels, consumers ---

func connItem(node string, c server.ConnectionInfo) item {
	it := item{
		"name": c.Name, "user": c.User, "vhost": c.Vhost,
		"peer_host": c.PeerHost, "peer_port": c.PeerPort, "host": c.Host, "port": c.Port,
		"channels": c.Channels, "client_properties": c.ClientProperties,
		"connected_at": c.ConnectedAt.UnixMilli(), "frame_max": c.FrameMax, "channel_max": c.ChannelMax,
		"timeout": int(c.Heartbeat / time.Second), "protocol": "AMQP 0-9-1", "type": "network",
		"state": "running", "node": node, "auth_mechanism": "PLAIN",
		"ssl": c.SSL, "ssl_protocol": nullIfEmpty(c.SSLProtocol), "peer_cert_subject": nullIfEmpty(c.PeerCertSubject),
	}
	if n, ok := c.ClientProperties["connection_name"].(string); ok {
		it["user_provided_name"] = n
	}
	if c.Flow {
		it["state"] = "flow"
	}
	return it
}

// visibleConn: management users see their own connections only.
func visibleConn(p principal, user string) bool {
	return p.seesAllVhosts() || p.name == user
}

func (a *api) listConnections(w http.ResponseWriter, r *http.Request) {
	vhost := var_(r, "vhost")
	writeList(w, r, a.gather(r, peerList{List: "connections", Vhost: vhost}, a.connectionItems(who(r), vhost)))
}

func (a *api) connectionItems(p principal, vhost string) []item {
	items := []item{}
	for _, c := range a.b.Connections() {
		if (vhost == "" || c.Vhost == vhost) && visibleConn(p, c.User) {
			items = append(items, connItem(a.nodeName, c))
		}
	}
	return items
}

func (a *api) getConnection(w http.ResponseWriter, r *http.Request) {
	name := var_(r, "name")
	for _, c := range a.b.Connections() {
		if c.Name == name && visibleConn(who(r), c.User) {
			writeJSON(w, http.StatusOK, connItem(a.nodeName, c))
			return
		}
	}
	notFound(w)
}

func (a *api) deleteConnection(w http.ResponseWriter, r *http.Request) {
	name := var_(r, "name")
	for _, c := range a.b.Connections() {
		if c.Name == name && visibleConn(who(r), c.User) {
			if a.b.CloseConnection(name, r.Header.Get("X-Reason")) {
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
	}
	notFound(w)
}

func (a *api) listChannels(w http.ResponseWriter, r *http.Request) {
	vhost, conn := var_(r, "vhost"), var_(r, "name")
	writeList(w, r, a.gather(r, peerList{List: "channels", Vhost: vhost, Conn: conn}, a.channelItems(who(r), vhost, conn)))
}

func (a *api) channelItems(p principal, vhost, conn string) []item {
	items := []item{}
	for _, c := range a.b.Channels() {
		if (vhost != "" && c.Vhost != vhost) || (conn != "" && c.Connection != conn) || !visibleConn(p, c.User) {
			continue
		}
		items = append(items, item{
			"name": c.Name, "number": c.Number, "user": c.User, "vhost": c.Vhost, "node": a.nodeName,
			"connection_details":      map[string]any{"name": c.Connection},
			"consumer_count":          c.Consumers,
			"messages_unacknowledged": c.Unacked,
			"prefetch_count":          c.Prefetch, "global_prefetch_count": c.GlobalPrefetch,
			"confirm": c.Confirm, "transactional": c.Transactional, "state": "running",
			"message_stats": map[string]any{"publish": c.Published, "confirm": c.Confirmed},
		})
	}
	return items
}

func (a *api) listConsumers(w http.ResponseWriter, r *http.Request) {
	vhost := var_(r, "vhost")
	writeList(w, r, a.gather(r, peerList{List: "consumers", Vhost: vhost}, a.consumerItems(who(r), vhost)))
}

func (a *api) consumerItems(p principal, vhost string) []item {
	items := []item{}
	for _, c := range a.b.Consumers() {
		if (vhost != "" && c.Vhost != vhost) || !a.vhostVisible(p, c.Vhost) {
			continue
		}
		items = append(items, item{
			"consumer_tag": c.Tag, "queue": map[string]any{"name": c.Queue, "vhost": c.Vhost},
			"channel_details": map[string]any{"name": c.Channel, "number": c.ChannelNumber, "connection_name": c.Connection},
			"ack_required":    c.AckRequired, "exclusive": c.Exclusive, "prefetch_count": c.Prefetch,
			"active": true, "activity_status": "up", "arguments": argsOrEmpty(amqp.Table(nil)),
			"priority": c.Priority,
		})
	}
	return items
}

// --- vhosts ---

func (a *api) vhostItem(name string) item {
	var ready, unacked int
	for _, q := range a.b.Queues(name) {
		ready += q.Ready
		unacked += q.Unacked
	}
	return item{
		"name": name, "description": "", "tags": []string{}, "default_queue_type": "classic",
		"metadata": map[string]any{"description": "", "tags": []string{}}, "tracing": a.b.Tracing(name),
		"messages": ready + unacked, "messages_ready": ready, "messages_unacknowledged": unacked,
		"cluster_state": map[string]any{a.nodeName: "running"},
	}
}

func (a *api) listVhosts(w http.ResponseWriter, r *http.Request) {
	p := who(r)
	items := []item{}
	for _, v := range a.b.VhostNames() {
		if p.seesAllVhosts() || a.hasPermissions(p.name, v) {
			items = append(items, a.vhostItem(v))
		}
	}
	writeList(w, r, items)
}

func (a *api) getVhost(w http.ResponseWriter, r *http.Request) {
	v := var_(r, "vhost")
	if !a.vhostExists(v) {
		notFound(w)
		return
	}
	writeJSON(w, http.StatusOK, a.vhostItem(v))
}

func (a *api) vhostExists(v string) bool {
	for _, n := range a.b.VhostNames() {
		if n == v {
			return true
		}
	}
	return false
}

func (a *api) putVhost(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Tracing *flexBool `json:"tracing"`
	}
	if err := readBody(r, &body); err != nil {
		badBody(w, err)
		return
	}
	v := var_(r, "vhost")
	isNew, err := a.b.AddVhost(v)
	if err == nil && isNew {
		// The creating user gets full permissions on it, as in RabbitMQ.
		err = a.b.SetPermission(who(r).name, v, server.Permission{Configure: ".*", Write: ".*", Read: ".*"})
	}
	if err == nil && body.Tracing != nil {
		err = a.b.SetTracing(v, bool(*body.Tracing))
	}
	if err != nil {
		if !unavailable(w, err) {
			badRequest(w, err.Error())
		}
		return
	}
	created(w, isNew)
}

func (a *api) deleteVhost(w http.ResponseWriter, r *http.Request) {
	if err := a.b.DeleteVhost(var_(r, "vhost")); err != nil {
		if unavailable(w, err) {
			return
		}
		notFound(w)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// --- users ---

func userItem(u server.User) item {
	return item{
		"name": u.Name, "password_hash": u.PasswordHash, "hashing_algorithm": "rabbit_password_hashing_sha256",
		"tags": tagsOrEmpty(u.Tags), "limits": map[string]any{},
	}
}

func (a *api) listUsers(w http.ResponseWriter, r *http.Request) {
	items := []item{}
	for _, u := range a.b.Users() {
		items = append(items, userItem(u))
	}
	writeList(w, r, items)
}

func (a *api) usersWithoutPermissions(w http.ResponseWriter, r *http.Request) {
	items := []item{}
	for _, u := range a.b.Users() {
		if len(u.Permissions) == 0 {
			items = append(items, userItem(u))
		}
	}
	writeList(w, r, items)
}

func (a *api) getUser(w http.ResponseWriter, r *http.Request) {
	u, ok := a.b.UserInfo(var_(r, "user"))
	if !ok {
		notFound(w)
		return
	}
	writeJSON(w, http.StatusOK, userItem(u))
}

// parseTags accepts RabbitMQ's two shapes: "a,b" or ["a","b"].
func parseTags(v any) ([]string, error) {
	var tags []string
	switch t := v.(type) {
	case string:
		for _, s := range strings.Split(t, ",") {
			if s = strings.TrimSpace(s); s != "" {
				tags = append(tags, s)
			}
		}
	case []any:
		for _, e := range t {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("tags must be strings")
			}
			tags = append(tags, s)
		}
	default:
		return nil, fmt.Errorf("tags must be a string or a list")
	}
	return tags, nil
}

func (a *api) putUser(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	if err := readBody(r, &body); err != nil {
		badBody(w, err)
		return
	}
	name := var_(r, "user")
	rawTags, ok := body["tags"]
	if !ok {
		badRequest(w, "[{key_missing,tags}]")
		return
	}
	tags, err := parseTags(rawTags)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	isNew, err := a.putUserFrom(name, body, tags)
	if err != nil {
		if !unavailable(w, err) {
			badRequest(w, err.Error())
		}
		return
	}
	created(w, isNew)
}

// putUserFrom creates or updates a user from password or password_hash
// (neither: an existing user keeps its password; a new one cannot log in
// with a password).
func (a *api) putUserFrom(name string, body map[string]any, tags []string) (bool, error) {
	hash := ""
	switch {
	case body["password"] != nil:
		pw, ok := body["password"].(string)
		if !ok {
			return false, errors.New("password must be a string")
		}
		hash = server.HashPassword(pw)
	case body["password_hash"] != nil:
		h, ok := body["password_hash"].(string)
		if !ok {
			return false, errors.New("password_hash must be a string")
		}
		if alg, _ := body["hashing_algorithm"].(string); alg != "" && alg != "rabbit_password_hashing_sha256" {
			return false, fmt.Errorf("unsupported hashing_algorithm %q (Warren stores rabbit_password_hashing_sha256)", alg)
		}
		hash = h
	default:
		if u, ok := a.b.UserInfo(name); ok {
			hash = u.PasswordHash
		}
	}
	return a.b.PutUser(name, hash, tags)
}

func (a *api) deleteUser(w http.ResponseWriter, r *http.Request) {
	if err := a.b.DeleteUser(var_(r, "user")); err != nil {
		if unavailable(w, err) {
			return
		}
		notFound(w)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *api) bulkDeleteUsers(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Users []string `json:"users"`
	}
	if err := readBody(r, &body); err != nil {
		badBody(w, err)
		return
	}
	for _, u := range body.Users {
		a.b.DeleteUser(u)
	}
	w.WriteHeader(http.StatusNoContent)
}

// --- permissions ---

func permItem(user, vhost string, p server.Permission) item {
	return item{"user": user, "vhost": vhost, "configure": p.Configure, "write": p.Write, "read": p.Read}
}

func (a *api) listPermissions(w http.ResponseWriter, r *http.Request) {
	user, vhost := var_(r, "user"), var_(r, "vhost")
	if user != "" {
		if _, ok := a.b.UserInfo(user); !ok {
			notFound(w)
			return
		}
	}
	if vhost != "" && !a.vhostExists(vhost) {
		notFound(w)
		return
	}
	items := []item{}
	for _, u := range a.b.Users() {
		if user != "" && u.Name != user {
			continue
		}
		vs := make([]string, 0, len(u.Permissions))
		for v := range u.Permissions {
			vs = append(vs, v)
		}
		sort.Strings(vs)
		for _, v := range vs {
			if vhost == "" || v == vhost {
				items = append(items, permItem(u.Name, v, u.Permissions[v]))
			}
		}
	}
	writeList(w, r, items)
}

func (a *api) getPermission(w http.ResponseWriter, r *http.Request) {
	u, ok := a.b.UserInfo(var_(r, "user"))
	if !ok {
		notFound(w)
		return
	}
	p, ok := u.Permissions[var_(r, "vhost")]
	if !ok {
		notFound(w)
		return
	}
	writeJSON(w, http.StatusOK, permItem(u.Name, var_(r, "vhost"), p))
}

func (a *api) putPermission(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	if err := readBody(r, &body); err != nil {
		badBody(w, err)
		return
	}
	p, err := permissionFrom(body)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	user, vhost := var_(r, "user"), var_(r, "vhost")
	u, ok := a.b.UserInfo(user)
	if !ok {
		badRequest(w, fmt.Sprintf("user '%s' does not exist", user))
		return
	}
	if !a.vhostExists(vhost) {
		badRequest(w, fmt.Sprintf("vhost '%s' does not exist", vhost))
		return
	}
	_, existed := u.Permissions[vhost]
	if err := a.b.SetPermission(user, vhost, p); err != nil {
		if unavailable(w, err) {
			return
		}
		badRequest(w, err.Error())
		return
	}
	created(w, !existed)
}

// permissionFrom reads configure/write/read, all required and valid regexps.
func permissionFrom(body map[string]any) (server.Permission, error) {
	var out [3]string
	for i, k := range []string{"configure", "write", "read"} {
		v, ok := body[k]
		if !ok {
			return server.Permission{}, fmt.Errorf("[{key_missing,%s}]", k)
		}
		s, ok := v.(string)
		if !ok {
			return server.Permission{}, fmt.Errorf("%s must be a string", k)
		}
		if _, err := regexp.Compile(s); err != nil {
			return server.Permission{}, fmt.Errorf("invalid regexp for %s: %v", k, err)
		}
		out[i] = s
	}
	return server.Permission{Configure: out[0], Write: out[1], Read: out[2]}, nil
}

func (a *api) deletePermission(w http.ResponseWriter, r *http.Request) {
	if err := a.b.ClearPermission(var_(r, "user"), var_(r, "vhost")); err != nil {
		if unavailable(w, err) {
			return
		}
		notFound(w)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// nullIfEmpty renders "" as JSON null, as RabbitMQ does for absent values.
func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// argsOrEmpty renders nil arguments as {}.
func argsOrEmpty(t amqp.Table) any {
	if t == nil {
		return map[string]any{}
	}
	return jsonTable(t)
}

// jsonTable converts a field table to JSON-friendly values.
func jsonTable(t amqp.Table) map[string]any {
	out := make(map[string]any, len(t))
	for k, v := range t {
		out[k] = jsonValue(v)
	}
	return out
}

func jsonValue(v any) any {
	switch x := v.(type) {
	case amqp.Table:
		return jsonTable(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonValue(e)
		}
		return out
	case []byte:
		return string(x)
	case time.Time:
		return x.Unix()
	case amqp.Decimal:
		return float64(x.Value) / math.Pow10(int(x.Scale))
	}
	return v
}

// clusterName is the cluster_name global parameter, or the node's name as
// RabbitMQ shows when none is set.
func (a *api) clusterName() string {
	if n := a.b.ClusterName(); n != "" {
		return n
	}
	return a.nodeName
}

// listeners lists the node's sockets in RabbitMQ's shape; an unspecified
// address is "::", as RabbitMQ shows a listener on every interface.
func (a *api) listeners() []item {
	out := []item{}
	for _, l := range a.b.Listeners() {
		ip, port := "::", 0
		if ta, ok := l.Addr.(*net.TCPAddr); ok {
			port = ta.Port
			if !ta.IP.IsUnspecified() && ta.IP != nil {
				ip = ta.IP.String()
			}
		}
		out = append(out, item{"node": a.nodeName, "protocol": l.Protocol, "ip_address": ip, "port": port})
	}
	return out
}

// exchangeTypes lists the types Warren routes, in RabbitMQ's shape (name,
// description, enabled), with the plugins' own descriptions where RabbitMQ
// has one (3.10.8 with rabbitmq_consistent_hash_exchange and
// rabbitmq_random_exchange enabled).
var exchangeTypes = []map[string]any{
	{"name": "direct", "description": "AMQP direct exchange, as per the AMQP specification", "enabled": true},
	{"name": "fanout", "description": "AMQP fanout exchange, as per the AMQP specification", "enabled": true},
	{"name": "headers", "description": "AMQP headers exchange, as per the AMQP specification", "enabled": true},
	{"name": "topic", "description": "AMQP topic exchange, as per the AMQP specification", "enabled": true},
	{"name": "x-consistent-hash", "description": "Consistent Hashing Exchange", "enabled": true},
	{"name": "x-delayed-message", "description": "Delayed Message Exchange.", "enabled": true},
	{"name": "x-federation-upstream", "description": "Federation upstream helper exchange", "internal_purpose": "federation", "enabled": true},
	{"name": "x-modulus-hash", "description": "Modulus Hashing Exchange", "enabled": true},
	{"name": "x-random", "description": "Randomly picks a binding (queue) to route via (to).", "enabled": true},
}
