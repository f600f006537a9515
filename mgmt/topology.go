package mgmt

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/amqp/server"
)

// Exchanges, queues and bindings: reads come from the broker's catalog;
// every change runs as AMQP methods in a direct session of the requesting
// user, so permissions, validation and reply texts are the AMQP ones.

// urlExchange maps the API's name for the default exchange.
func urlExchange(name string) string {
	if name == "amq.default" {
		return ""
	}
	return name
}

func exchangeItem(x server.ExchangeInfo) item {
	it := item{
		"name": x.Name, "vhost": x.Vhost, "type": x.Type, "durable": x.Durable, "auto_delete": x.AutoDelete,
		"internal": x.Internal, "arguments": argsOrEmpty(x.Arguments), "user_who_performed_action": "rmq-internal",
		"policy": nullIfEmpty(x.Policy),
	}
	if x.Type == server.DelayedType {
		it["messages_delayed"] = x.Delayed
	}
	return it
}

func (a *api) listExchanges(w http.ResponseWriter, r *http.Request) {
	writeVhostList(a, w, r, a.b.Exchanges, func(x server.ExchangeInfo) string { return x.Vhost }, exchangeItem)
}

// writeVhostList answers a list of the objects of the path's {vhost} (every
// vhost when absent) that the user may see.
func writeVhostList[T any](a *api, w http.ResponseWriter, r *http.Request, all func(vhost string) []T, vhostOf func(T) string, render func(T) item) {
	p, vhost := who(r), var_(r, "vhost")
	if vhost != "" && !a.vhostExists(vhost) {
		notFound(w)
		return
	}
	items := []item{}
	for _, o := range all(vhost) {
		if a.vhostVisible(p, vhostOf(o)) {
			items = append(items, render(o))
		}
	}
	writeList(w, r, items)
}

func (a *api) getExchange(w http.ResponseWriter, r *http.Request) {
	vhost := var_(r, "vhost")
	x, ok := a.b.Exchange(vhost, urlExchange(var_(r, "name")))
	if !ok || vhost == "" || !a.vhostVisible(who(r), vhost) {
		notFound(w)
		return
	}
	writeJSON(w, http.StatusOK, exchangeItem(x))
}

func (a *api) putExchange(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Type       string         `json:"type"`
		Durable    *flexBool      `json:"durable"`
		AutoDelete flexBool       `json:"auto_delete"`
		Internal   flexBool       `json:"internal"`
		Arguments  map[string]any `json:"arguments"`
	}
	if err := readBody(r, &body); err != nil {
		badBody(w, err)
		return
	}
	if body.Type == "" {
		badRequest(w, "[{key_missing,type}]")
		return
	}
	vhost, name := var_(r, "vhost"), urlExchange(var_(r, "name"))
	args, err := tableFrom(body.Arguments)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	durable := body.Durable == nil || bool(*body.Durable) // RabbitMQ's API defaults to durable
	d := a.direct(w, r, vhost)
	if d == nil {
		return
	}
	defer d.Close()
	_, existed := a.b.Exchange(vhost, name)
	if _, err := d.Call(&amqp.ExchangeDeclare{Exchange: name, Type: body.Type, Durable: durable,
		AutoDelete: bool(body.AutoDelete), Internal: bool(body.Internal), Arguments: args}); err != nil {
		amqpFailure(w, err)
		return
	}
	created(w, !existed)
}

func (a *api) deleteExchange(w http.ResponseWriter, r *http.Request) {
	vhost, name := var_(r, "vhost"), urlExchange(var_(r, "name"))
	_, ok := a.b.Exchange(vhost, name)
	a.callFor204(w, r, vhost, ok, &amqp.ExchangeDelete{Exchange: name, IfUnused: r.URL.Query().Get("if-unused") == "true"})
}

func queueItem(q server.QueueInfo, detail bool) item {
	ms := map[string]any{"publish": q.Published, "deliver_get": q.Delivered, "redeliver": q.Redelivered, "ack": q.Acked}
	it := item{
		"name": q.Name, "vhost": q.Vhost, "durable": q.Durable, "auto_delete": q.AutoDelete, "exclusive": q.Exclusive,
		"arguments": argsOrEmpty(q.Arguments), "node": q.Node, "state": "running", "type": "classic",
		"messages": q.Ready + q.Unacked, "messages_ready": q.Ready, "messages_unacknowledged": q.Unacked,
		"message_bytes_ready": q.ReadyBytes, "consumers": len(q.Consumers),
		"policy": nil, "effective_policy_definition": map[string]any{}, "operator_policy": nil,
		"exclusive_consumer_tag": nil, "owner_pid_details": nil, "message_stats": ms,
		"consumer_utilisation": nil, "idle_since": nil,
	}
	if q.Owner != "" {
		it["owner_pid_details"] = map[string]any{"name": q.Owner}
	}
	if t, _ := q.Arguments["x-queue-type"].(string); t == "quorum" {
		// A quorum queue as RabbitMQ shows one: its group's leader and
		// members (one member, its node, until the queue is replicated).
		it["type"], it["leader"] = "quorum", q.Node
		it["members"], it["online"] = []string{q.Node}, []string{q.Node}
		if q.Members != nil {
			it["members"], it["online"] = q.Members, q.Online
		}
		// Every message of a quorum queue is stored; its figures and keys
		// are RabbitMQ's for the type (none of a classic queue's own).
		it["messages_persistent"], it["message_bytes"], it["message_bytes_persistent"] = q.Ready+q.Unacked, q.ReadyBytes, q.ReadyBytes
		it["messages_dlx"], it["message_bytes_dlx"] = q.DLX, q.DLXBytes
		it["messages"] = q.Ready + q.Unacked + q.DLX
		it["single_active_consumer_ctag"] = nil
		if sac, _ := q.Arguments["x-single-active-consumer"].(bool); sac && len(q.Consumers) > 0 {
			it["single_active_consumer_ctag"] = q.Consumers[0].Tag
		}
		for _, k := range []string{"exclusive_consumer_tag", "idle_since", "owner_pid_details", "consumer_utilisation",
			"backing_queue_status", "messages_paged_out", "head_message_timestamp"} {
			delete(it, k)
		}
	}
	if q.Stream != nil {
		streamItem(it, q)
	}
	if q.Policy != nil {
		it["policy"], it["effective_policy_definition"] = q.Policy.Name, q.Policy.Definition
	}
	for _, c := range q.Consumers {
		if c.Exclusive {
			it["exclusive_consumer_tag"] = c.Tag
		}
	}
	if detail {
		cd := make([]item, 0, len(q.Consumers))
		for _, c := range q.Consumers {
			cd = append(cd, item{"consumer_tag": c.Tag, "ack_required": !c.NoAck, "exclusive": c.Exclusive,
				"queue": map[string]any{"name": q.Name, "vhost": q.Vhost}})
		}
		it["consumer_details"] = cd
	}
	return it
}

func (a *api) listQueues(w http.ResponseWriter, r *http.Request) {
	vhost := var_(r, "vhost")
	if vhost != "" && !a.vhostExists(vhost) {
		notFound(w)
		return
	}
	writeList(w, r, a.gather(r, peerList{List: "queues", Vhost: vhost}, a.queueItems(who(r), vhost)))
}

func (a *api) queueItems(p principal, vhost string) []item {
	items := []item{}
	for _, q := range a.b.Queues(vhost) {
		if a.vhostVisible(p, q.Vhost) {
			items = append(items, queueItem(q, false))
		}
	}
	return items
}

func (a *api) getQueue(w http.ResponseWriter, r *http.Request) {
	vhost := var_(r, "vhost")
	q, ok := a.b.Queue(vhost, var_(r, "name"))
	if !ok || vhost == "" || !a.vhostVisible(who(r), vhost) {
		notFound(w)
		return
	}
	it := queueItem(q, true)
	if q.Node != a.nodeName {
		// A queue at home elsewhere: its figures are there.
		for _, h := range a.gather(r, peerList{List: "queues", Vhost: vhost}, []item{it}) {
			if h["name"] == q.Name {
				it = h
			}
		}
	}
	writeJSON(w, http.StatusOK, it)
}

func (a *api) putQueue(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Durable    *flexBool      `json:"durable"`
		AutoDelete flexBool       `json:"auto_delete"`
		Arguments  map[string]any `json:"arguments"`
	}
	if err := readBody(r, &body); err != nil {
		badBody(w, err)
		return
	}
	vhost, name := var_(r, "vhost"), var_(r, "name")
	args, err := tableFrom(body.Arguments)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	d := a.direct(w, r, vhost)
	if d == nil {
		return
	}
	defer d.Close()
	_, existed := a.b.Queue(vhost, name)
	durable := body.Durable == nil || bool(*body.Durable)
	if _, err := d.Call(&amqp.QueueDeclare{Queue: name, Durable: durable, AutoDelete: bool(body.AutoDelete), Arguments: args}); err != nil {
		amqpFailure(w, err)
		return
	}
	created(w, !existed)
}

func (a *api) deleteQueue(w http.ResponseWriter, r *http.Request) {
	vhost, name := var_(r, "vhost"), var_(r, "name")
	_, ok := a.b.Queue(vhost, name)
	q := r.URL.Query()
	a.callFor204(w, r, vhost, ok, &amqp.QueueDelete{Queue: name, IfEmpty: q.Get("if-empty") == "true", IfUnused: q.Get("if-unused") == "true"})
}

func (a *api) purgeQueue(w http.ResponseWriter, r *http.Request) {
	vhost, name := var_(r, "vhost"), var_(r, "name")
	_, ok := a.b.Queue(vhost, name)
	a.callFor204(w, r, vhost, ok, &amqp.QueuePurge{Queue: name})
}

// callFor204 runs m as the user on vhost and answers 204, or 404 when the
// object does not exist, or the AMQP refusal.
func (a *api) callFor204(w http.ResponseWriter, r *http.Request, vhost string, exists bool, m amqp.Method) {
	if !exists {
		notFound(w)
		return
	}
	d := a.direct(w, r, vhost)
	if d == nil {
		return
	}
	defer d.Close()
	if _, err := d.Call(m); err != nil {
		amqpFailure(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// getMessages is POST /api/queues/{vhost}/{name}/get: basic.get up to count
// messages, then ack or requeue them all as ackmode says.
func (a *api) getMessages(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Count    flexInt   `json:"count"`
		AckMode  string    `json:"ackmode"`
		Encoding string    `json:"encoding"`
		Truncate flexInt   `json:"truncate"`
		Requeue  *flexBool `json:"requeue"` // older clients
	}
	if err := readBody(r, &body); err != nil {
		badBody(w, err)
		return
	}
	if body.AckMode == "" && body.Requeue != nil {
		body.AckMode = map[bool]string{true: "ack_requeue_true", false: "ack_requeue_false"}[bool(*body.Requeue)]
	}
	switch {
	case body.AckMode == "":
		badRequest(w, "[{key_missing,ackmode}]")
		return
	case body.Encoding == "":
		badRequest(w, "[{key_missing,encoding}]")
		return
	case body.Encoding != "auto" && body.Encoding != "base64":
		badRequest(w, fmt.Sprintf("Unsupported encoding %q (auto or base64)", body.Encoding))
		return
	}
	requeue, reject := false, false
	switch body.AckMode {
	case "ack_requeue_true":
		requeue = true
	case "ack_requeue_false":
	case "reject_requeue_true":
		requeue, reject = true, true
	case "reject_requeue_false":
		reject = true
	default:
		badRequest(w, fmt.Sprintf("Unsupported ackmode %q", body.AckMode))
		return
	}
	count := body.Count.or(1)
	if count < 1 {
		badRequest(w, "count must be a positive integer")
		return
	}
	truncate := body.Truncate.or(-1)
	if body.Truncate.set && truncate < 0 {
		badRequest(w, "truncate must be a non-negative integer")
		return
	}
	vhost, name := var_(r, "vhost"), var_(r, "name")
	if _, ok := a.b.Queue(vhost, name); !ok {
		notFound(w)
		return
	}
	d := a.direct(w, r, vhost)
	if d == nil {
		return
	}
	defer d.Close()
	out := []item{}
	var lastTag uint64
	for range count {
		rep, err := d.Call(&amqp.BasicGet{Queue: name})
		if err != nil {
			amqpFailure(w, err)
			return
		}
		ok, isOK := rep.Method.(*amqp.BasicGetOk)
		if !isOK {
			break // get-empty
		}
		lastTag = ok.DeliveryTag
		out = append(out, messageItem(ok, rep, body.Encoding, int(truncate)))
	}
	if lastTag > 0 {
		var m amqp.Method = &amqp.BasicAck{DeliveryTag: lastTag, Multiple: true}
		if requeue || reject {
			m = &amqp.BasicNack{DeliveryTag: lastTag, Multiple: true, Requeue: requeue}
		}
		if _, err := d.Call(m); err != nil {
			amqpFailure(w, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func messageItem(ok *amqp.BasicGetOk, rep *server.Reply, encoding string, truncate int) item {
	body := rep.Body
	it := item{
		"payload_bytes": len(body), "redelivered": ok.Redelivered, "exchange": ok.Exchange,
		"routing_key": ok.RoutingKey, "message_count": ok.MessageCount, "properties": propertiesJSON(&rep.Props),
	}
	if truncate >= 0 && len(body) > truncate {
		body = body[:truncate]
	}
	if encoding == "auto" && utf8.Valid(body) {
		it["payload"], it["payload_encoding"] = string(body), "string"
	} else {
		it["payload"], it["payload_encoding"] = base64.StdEncoding.EncodeToString(body), "base64"
	}
	return it
}

// propertiesJSON renders set properties with RabbitMQ's field names.
func propertiesJSON(p *amqp.Properties) map[string]any {
	out := map[string]any{}
	f := p.Flags
	set := func(flag uint16, k string, v any) {
		if f&flag != 0 {
			out[k] = v
		}
	}
	set(amqp.FlagContentType, "content_type", p.ContentType)
	set(amqp.FlagContentEncoding, "content_encoding", p.ContentEncoding)
	if f&amqp.FlagHeaders != 0 {
		out["headers"] = argsOrEmpty(p.Headers)
	}
	set(amqp.FlagDeliveryMode, "delivery_mode", p.DeliveryMode)
	set(amqp.FlagPriority, "priority", p.Priority)
	set(amqp.FlagCorrelationID, "correlation_id", p.CorrelationID)
	set(amqp.FlagReplyTo, "reply_to", p.ReplyTo)
	set(amqp.FlagExpiration, "expiration", p.Expiration)
	set(amqp.FlagMessageID, "message_id", p.MessageID)
	set(amqp.FlagTimestamp, "timestamp", p.Timestamp.Unix())
	set(amqp.FlagType, "type", p.Type)
	set(amqp.FlagUserID, "user_id", p.UserID)
	set(amqp.FlagAppID, "app_id", p.AppID)
	return out
}

// propertiesFrom parses the API's properties object.
func propertiesFrom(m map[string]any) (amqp.Properties, error) {
	var p amqp.Properties
	str := func(k string, flag uint16, dst *string) error {
		v, ok := m[k]
		if !ok {
			return nil
		}
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("property %s must be a string", k)
		}
		*dst = s
		p.Flags |= flag
		return nil
	}
	for _, f := range []struct {
		k    string
		flag uint16
		dst  *string
	}{
		{"content_type", amqp.FlagContentType, &p.ContentType}, {"content_encoding", amqp.FlagContentEncoding, &p.ContentEncoding},
		{"correlation_id", amqp.FlagCorrelationID, &p.CorrelationID}, {"reply_to", amqp.FlagReplyTo, &p.ReplyTo},
		{"expiration", amqp.FlagExpiration, &p.Expiration}, {"message_id", amqp.FlagMessageID, &p.MessageID},
		{"type", amqp.FlagType, &p.Type}, {"user_id", amqp.FlagUserID, &p.UserID}, {"app_id", amqp.FlagAppID, &p.AppID},
	} {
		if err := str(f.k, f.flag, f.dst); err != nil {
			return p, err
		}
	}
	small := func(k string, flag uint16, dst *uint8) error {
		v, ok := m[k]
		if !ok {
			return nil
		}
		n, err := intFrom(v)
		if err != nil || n < 0 || n > 255 {
			return fmt.Errorf("property %s must be an integer from 0 to 255", k)
		}
		*dst = uint8(n)
		p.Flags |= flag
		return nil
	}
	if err := small("delivery_mode", amqp.FlagDeliveryMode, &p.DeliveryMode); err != nil {
		return p, err
	}
	if err := small("priority", amqp.FlagPriority, &p.Priority); err != nil {
		return p, err
	}
	if v, ok := m["timestamp"]; ok {
		n, err := intFrom(v)
		if err != nil {
			return p, fmt.Errorf("property timestamp must be an integer (seconds)")
		}
		p.Timestamp, p.Flags = time.Unix(n, 0), p.Flags|amqp.FlagTimestamp
	}
	if v, ok := m["headers"]; ok {
		h, ok := v.(map[string]any)
		if !ok {
			return p, fmt.Errorf("property headers must be an object")
		}
		t, err := tableFrom(h)
		if err != nil {
			return p, err
		}
		p.Headers, p.Flags = t, p.Flags|amqp.FlagHeaders
	}
	return p, nil
}

func intFrom(v any) (int64, error) {
	switch n := v.(type) {
	case json.Number:
		return n.Int64()
	case float64:
		if n == float64(int64(n)) {
			return int64(n), nil
		}
	case string:
		return strconv.ParseInt(n, 10, 64)
	}
	return 0, fmt.Errorf("not an integer: %v", v)
}

// tableFrom converts decoded JSON to a field table: integral numbers
// become long (int64, as RabbitMQ stores them), others double.
func tableFrom(m map[string]any) (amqp.Table, error) {
	if m == nil {
		return nil, nil
	}
	t := make(amqp.Table, len(m))
	for k, v := range m {
		fv, err := fieldFrom(v)
		if err != nil {
			return nil, fmt.Errorf("argument %s: %w", k, err)
		}
		t[k] = fv
	}
	return t, nil
}

func fieldFrom(v any) (any, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string, bool:
		return x, nil
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i, nil
		}
		f, err := x.Float64()
		return f, err
	case float64:
		if x == float64(int64(x)) {
			return int64(x), nil
		}
		return x, nil
	case map[string]any:
		return tableFrom(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			fv, err := fieldFrom(e)
			if err != nil {
				return nil, err
			}
			out[i] = fv
		}
		return out, nil
	}
	return nil, fmt.Errorf("unsupported value %v", v)
}

// publish is POST /api/exchanges/{vhost}/{name}/publish.
func (a *api) publish(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Properties      map[string]any `json:"properties"`
		RoutingKey      *string        `json:"routing_key"`
		Payload         *string        `json:"payload"`
		PayloadEncoding string         `json:"payload_encoding"`
	}
	if err := readBody(r, &body); err != nil {
		badBody(w, err)
		return
	}
	// RabbitMQ requires all four, in this order.
	for _, k := range []struct {
		name string
		set  bool
	}{{"routing_key", body.RoutingKey != nil}, {"payload", body.Payload != nil}, {"payload_encoding", body.PayloadEncoding != ""}} {
		if !k.set {
			badRequest(w, "[{key_missing,"+k.name+"}]")
			return
		}
	}
	payload := []byte(*body.Payload)
	switch body.PayloadEncoding {
	case "string":
	case "base64":
		var err error
		if payload, err = base64.StdEncoding.DecodeString(*body.Payload); err != nil {
			badRequest(w, "payload is not valid base64")
			return
		}
	default:
		badRequest(w, fmt.Sprintf("Unsupported payload_encoding %q (string or base64)", body.PayloadEncoding))
		return
	}
	props, err := propertiesFrom(body.Properties)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	vhost, name := var_(r, "vhost"), urlExchange(var_(r, "name"))
	if _, ok := a.b.Exchange(vhost, name); !ok {
		notFound(w)
		return
	}
	d := a.direct(w, r, vhost)
	if d == nil {
		return
	}
	defer d.Close()
	rep, err := d.Publish(&amqp.BasicPublish{Exchange: name, RoutingKey: *body.RoutingKey, Mandatory: true}, props, payload)
	if err == nil {
		// A refusal arrives as the channel.close after the content.
		_, err = d.Call(&amqp.BasicQos{})
	}
	if err != nil {
		amqpFailure(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"routed": rep.Returned == nil})
}

// --- bindings ---

// propertiesKey is RabbitMQ's identifier of a binding within its source
// and destination: the routing key, plus a hash of the arguments if any.
func propertiesKey(key string, args amqp.Table) string {
	if len(args) == 0 {
		if key == "" {
			return "~"
		}
		return url.PathEscape(key)
	}
	ks := make([]string, 0, len(args))
	for k := range args {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	h := sha256.New()
	for _, k := range ks {
		fmt.Fprintf(h, "%s=%T:%v;", k, args[k], args[k])
	}
	return url.PathEscape(key) + "~" + base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:16])
}

func bindingItem(b server.BindingInfo) item {
	return item{
		"source": b.Source, "vhost": b.Vhost, "destination": b.Destination, "destination_type": b.DestinationType,
		"routing_key": b.RoutingKey, "arguments": argsOrEmpty(b.Arguments), "properties_key": propertiesKey(b.RoutingKey, b.Arguments),
	}
}

func (a *api) listBindings(w http.ResponseWriter, r *http.Request) {
	a.writeBindings(w, r, func(server.BindingInfo) bool { return true })
}

func (a *api) writeBindings(w http.ResponseWriter, r *http.Request, keep func(server.BindingInfo) bool) {
	p, vhost := who(r), var_(r, "vhost")
	if vhost != "" && !a.vhostExists(vhost) {
		notFound(w)
		return
	}
	items := []item{}
	for _, b := range a.b.Bindings(vhost) {
		if keep(b) && a.vhostVisible(p, b.Vhost) {
			items = append(items, bindingItem(b))
		}
	}
	writeList(w, r, items)
}

// bindingsOf lists an exchange's bindings as source ("source") or
// destination ("edest"), or a queue's ("qdest").
func (a *api) bindingsOf(role string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		vhost, name := var_(r, "vhost"), var_(r, "name")
		switch role {
		case "qdest":
			if _, ok := a.b.Queue(vhost, name); !ok {
				notFound(w)
				return
			}
		default:
			name = urlExchange(name)
			if _, ok := a.b.Exchange(vhost, name); !ok {
				notFound(w)
				return
			}
		}
		a.writeBindings(w, r, func(b server.BindingInfo) bool {
			switch role {
			case "source":
				return b.Source == name
			case "edest":
				return b.Destination == name && b.DestinationType == "exchange"
			}
			return b.Destination == name && b.DestinationType == "queue"
		})
	}
}

func destType(dt string) string {
	if dt == "q" {
		return "queue"
	}
	return "exchange"
}

// bindingEnds checks both ends exist; it answers 404 otherwise.
func (a *api) bindingEnds(w http.ResponseWriter, r *http.Request, dt string) (vhost, src, dst string, ok bool) {
	vhost, src, dst = var_(r, "vhost"), urlExchange(var_(r, "source")), var_(r, "destination")
	if _, found := a.b.Exchange(vhost, src); !found {
		notFound(w)
		return
	}
	if dt == "q" {
		_, ok = a.b.Queue(vhost, dst)
	} else {
		dst = urlExchange(dst)
		_, ok = a.b.Exchange(vhost, dst)
	}
	if !ok {
		notFound(w)
	}
	return
}

func (a *api) listBindingsBetween(dt string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, src, dst, ok := a.bindingEnds(w, r, dt)
		if !ok {
			return
		}
		a.writeBindings(w, r, func(b server.BindingInfo) bool {
			return b.Source == src && b.Destination == dst && b.DestinationType == destType(dt)
		})
	}
}

func (a *api) findBinding(r *http.Request, dt, src, dst string) (server.BindingInfo, bool) {
	props := var_(r, "props")
	for _, b := range a.b.Bindings(var_(r, "vhost")) {
		if b.Source == src && b.Destination == dst && b.DestinationType == destType(dt) {
			pk, _ := url.PathUnescape(propertiesKey(b.RoutingKey, b.Arguments))
			if pk == props || propertiesKey(b.RoutingKey, b.Arguments) == props {
				return b, true
			}
		}
	}
	return server.BindingInfo{}, false
}

func (a *api) getBinding(dt string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, src, dst, ok := a.bindingEnds(w, r, dt)
		if !ok {
			return
		}
		b, ok := a.findBinding(r, dt, src, dst)
		if !ok {
			notFound(w)
			return
		}
		writeJSON(w, http.StatusOK, bindingItem(b))
	}
}

func (a *api) postBinding(dt string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			RoutingKey string         `json:"routing_key"`
			Arguments  map[string]any `json:"arguments"`
		}
		if err := readBody(r, &body); err != nil {
			badBody(w, err)
			return
		}
		args, err := tableFrom(body.Arguments)
		if err != nil {
			badRequest(w, err.Error())
			return
		}
		vhost, src, dst, ok := a.bindingEnds(w, r, dt)
		if !ok {
			return
		}
		d := a.direct(w, r, vhost)
		if d == nil {
			return
		}
		defer d.Close()
		var m amqp.Method = &amqp.QueueBind{Queue: dst, Exchange: src, RoutingKey: body.RoutingKey, Arguments: args}
		if dt == "e" {
			m = &amqp.ExchangeBind{Destination: dst, Source: src, RoutingKey: body.RoutingKey, Arguments: args}
		}
		if _, err := d.Call(m); err != nil {
			amqpFailure(w, err)
			return
		}
		// RabbitMQ's Location is relative to the POST's path, with the
		// properties key escaped once more (rabbit_web_dispatch_util:relativise).
		w.Header().Set("Location", url.PathEscape(dst)+"/"+url.PathEscape(propertiesKey(body.RoutingKey, args)))
		w.WriteHeader(http.StatusCreated)
	}
}

func (a *api) deleteBinding(dt string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		vhost, src, dst, ok := a.bindingEnds(w, r, dt)
		if !ok {
			return
		}
		b, ok := a.findBinding(r, dt, src, dst)
		if !ok {
			notFound(w)
			return
		}
		d := a.direct(w, r, vhost)
		if d == nil {
			return
		}
		defer d.Close()
		var m amqp.Method = &amqp.QueueUnbind{Queue: dst, Exchange: src, RoutingKey: b.RoutingKey, Arguments: b.Arguments}
		if dt == "e" {
			m = &amqp.ExchangeUnbind{Destination: dst, Source: src, RoutingKey: b.RoutingKey, Arguments: b.Arguments}
		}
		if _, err := d.Call(m); err != nil {
			amqpFailure(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// browse is GET /api/queues/{vhost}/{name}/browse?offset=&count=&encoding=
// (a Warren extension): the ready messages at those positions, left where
// they are, so looking changes nothing (RabbitMQ's /get can only take and
// requeue, which marks messages redelivered and moves them).
func (a *api) browse(w http.ResponseWriter, r *http.Request) {
	vhost, name := var_(r, "vhost"), var_(r, "name")
	q := r.URL.Query()
	offset, count := 0, 20
	var err error
	if s := q.Get("offset"); s != "" {
		if offset, err = strconv.Atoi(s); err != nil || offset < 0 {
			badRequest(w, "offset must be a non-negative integer")
			return
		}
	}
	if s := q.Get("count"); s != "" {
		if count, err = strconv.Atoi(s); err != nil || count < 1 || count > 500 {
			badRequest(w, "count must be an integer from 1 to 500")
			return
		}
	}
	encoding := q.Get("encoding")
	if encoding == "" {
		encoding = "auto"
	}
	if encoding != "auto" && encoding != "base64" {
		badRequest(w, fmt.Sprintf("Unsupported encoding %q (auto or base64)", encoding))
		return
	}
	if !a.vhostVisible(who(r), vhost) {
		notFound(w)
		return
	}
	if _, ok := a.b.Queue(vhost, name); !ok {
		notFound(w)
		return
	}
	if err := a.b.MayRead(who(r).name, vhost, name); err != nil {
		amqpFailure(w, err)
		return
	}
	es, total, ok := a.b.Peek(vhost, name, offset, count)
	if !ok {
		notFound(w)
		return
	}
	items := make([]item, 0, len(es))
	for i, e := range es {
		m := e.Msg
		props := m.Props()
		it := messageItem(&amqp.BasicGetOk{Redelivered: e.Redelivered, Exchange: m.Exchange, RoutingKey: m.RoutingKey},
			&server.Reply{Props: props, Body: m.Body}, encoding, 50000)
		delete(it, "message_count")
		it["position"] = offset + i
		items = append(items, it)
	}
	writeJSON(w, http.StatusOK, map[string]any{"total": total, "offset": offset, "items": items})
}
