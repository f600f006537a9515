package mgmt

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/amqp/server"
	"github.com/warren-mq/warren/web"
)

// api serves RabbitMQ's management HTTP API over a running broker.
type api struct {
	b        *server.Server
	nodeName string  // this node's name (server.Config.NodeName)
	cluster  Cluster // nil on a single node

	rates *rateState
}

// level is what an endpoint requires of the user's tags.
type level int

const (
	levelManagement level = iota // any management tag
	levelMonitoring
	levelPolicymaker
	levelAdministrator
)

// The refusals are RabbitMQ's (rabbit_mgmt_util): a policymaker-level
// endpoint (policies and parameters) says "User not authorised to access
// object" both for a missing tag and for a vhost the user has no
// permissions on.
var levelRefusal = map[level]string{
	levelManagement:    "Not management user",
	levelMonitoring:    "Not monitor user",
	levelPolicymaker:   "User not authorised to access object",
	levelAdministrator: "Not administrator user",
}

// scope says how an endpoint with a {vhost} in its path checks the vhost.
type scope int

const (
	// vhostAccess: the user needs permissions on the vhost (administrators
	// excepted), as RabbitMQ's is_authorized_vhost; otherwise 401 "User not
	// authorised to access virtual host", before any 404.
	vhostAccess scope = iota
	// vhostMonitor: as vhostAccess, but monitoring users see every vhost
	// (RabbitMQ's vhost-limits).
	vhostMonitor
	// vhostFiltered: no check; the handler lists only what the user may
	// see (RabbitMQ's /api/consumers/{vhost}).
	vhostFiltered
)

// principal is the authenticated user of a request.
type principal struct {
	name string
	tags []string
}

func (p principal) has(tag string) bool { return slices.Contains(p.tags, tag) }

func (p principal) reaches(l level) bool {
	switch {
	case p.has("administrator"):
		return true
	case l == levelMonitoring:
		return p.has("monitoring")
	case l == levelPolicymaker:
		return p.has("policymaker")
	case l == levelManagement:
		return p.has("management") || p.has("monitoring") || p.has("policymaker")
	}
	return false
}

// seesAllVhosts: monitoring users and administrators see every vhost in
// /api/vhosts, every connection and channel, and every vhost's limits;
// management users only their own connections and the vhosts they have
// permissions on. Objects in vhosts (queues, exchanges, bindings,
// policies, consumers) need permissions on the vhost from every user but
// an administrator, monitoring users included (RabbitMQ 3.10).
func (p principal) seesAllVhosts() bool { return p.has("administrator") || p.has("monitoring") }

type ctxKey struct{}

func who(r *http.Request) principal { return r.Context().Value(ctxKey{}).(principal) }

// NewHandler returns the HTTP handler of the management API of a single
// node.
func NewHandler(b *server.Server) http.Handler { return NewClusterHandler(b, nil) }

// NewClusterHandler returns the HTTP handler of the management API of a
// cluster's node (c nil: a single node).
func NewClusterHandler(b *server.Server, c Cluster) http.Handler {
	a := &api{b: b, nodeName: b.NodeName(), cluster: c, rates: &rateState{b: b}}
	if c != nil {
		b.SetPeerAPI(a.servePeer)
	}
	// A sampler every second keeps rates meaningful for one-shot readers
	// (warrenctl overview); it stops when the handler is garbage.
	stop := make(chan struct{})
	go a.rates.sampleEvery(time.Second, stop)
	runtime.AddCleanup(a, func(stop chan struct{}) { close(stop) }, stop)
	r := mux.NewRouter()
	r.UseEncodedPath() // vhost "/" is %2F inside one path segment
	r.StrictSlash(false)

	ok := func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	}
	r.HandleFunc("/api/health/checks/alive", ok).Methods(http.MethodGet)
	r.HandleFunc("/healthz", ok).Methods(http.MethodGet)
	r.Handle("/metrics", MetricsHandler(b, false)).Methods(http.MethodGet)
	r.Handle("/metrics/per-object", MetricsHandler(b, true)).Methods(http.MethodGet)

	hs := func(path string, l level, sc scope, fn http.HandlerFunc, methods ...string) {
		r.Handle(path, a.auth(fn, l, sc)).Methods(methods...)
		if !strings.HasSuffix(path, "/") && !strings.Contains(path, "{") {
			r.Handle(path+"/", a.auth(fn, l, sc)).Methods(methods...)
		}
	}
	h := func(path string, l level, fn http.HandlerFunc, methods ...string) {
		hs(path, l, vhostAccess, fn, methods...)
	}
	get, put, del, post := http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodPost

	h("/api/health/checks/alarms", levelManagement, a.healthAlarms, get)
	h("/api/health/checks/local-alarms", levelManagement, a.healthAlarms, get)
	h("/api/health/checks/virtual-hosts", levelManagement, ok, get)
	h("/api/health/checks/port-listener/{port}", levelManagement, ok, get)
	h("/api/aliveness-test/{vhost}", levelManagement, a.aliveness, get)
	h("/api/overview", levelManagement, a.overview, get)
	h("/api/whoami", levelManagement, a.whoami, get)
	h("/api/nodes", levelMonitoring, a.nodes, get)
	h("/api/nodes/{node}", levelMonitoring, a.node, get)
	h("/api/cluster", levelMonitoring, a.clusterStatus, get)
	h("/api/cluster/join", levelAdministrator, a.clusterJoin, post)
	h("/api/cluster/leave", levelAdministrator, a.clusterLeave, post)
	h("/api/cluster/nodes/{node}", levelAdministrator, a.clusterForget, del)
	h("/api/extensions", levelManagement, func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, []any{}) }, get)

	h("/api/connections", levelManagement, a.listConnections, get)
	h("/api/vhosts/{vhost}/connections", levelManagement, a.listConnections, get)
	h("/api/connections/{name}", levelManagement, a.getConnection, get)
	h("/api/connections/{name}", levelManagement, a.deleteConnection, del)
	h("/api/connections/{name}/channels", levelManagement, a.listChannels, get)
	h("/api/channels", levelManagement, a.listChannels, get)
	h("/api/vhosts/{vhost}/channels", levelManagement, a.listChannels, get)
	h("/api/consumers", levelManagement, a.listConsumers, get)
	hs("/api/consumers/{vhost}", levelManagement, vhostFiltered, a.listConsumers, get)

	h("/api/vhosts", levelManagement, a.listVhosts, get)
	h("/api/vhosts/{vhost}", levelAdministrator, a.getVhost, get)
	h("/api/vhosts/{vhost}", levelAdministrator, a.putVhost, put)
	h("/api/vhosts/{vhost}", levelAdministrator, a.deleteVhost, del)
	h("/api/vhosts/{vhost}/permissions", levelAdministrator, a.listPermissions, get)
	h("/api/users", levelAdministrator, a.listUsers, get)
	h("/api/users/without-permissions", levelAdministrator, a.usersWithoutPermissions, get)
	h("/api/users/bulk-delete", levelAdministrator, a.bulkDeleteUsers, post)
	h("/api/users/{user}", levelAdministrator, a.getUser, get)
	h("/api/users/{user}", levelAdministrator, a.putUser, put)
	h("/api/users/{user}", levelAdministrator, a.deleteUser, del)
	h("/api/users/{user}/permissions", levelAdministrator, a.listPermissions, get)
	h("/api/permissions", levelAdministrator, a.listPermissions, get)
	h("/api/permissions/{vhost}/{user}", levelAdministrator, a.getPermission, get)
	h("/api/permissions/{vhost}/{user}", levelAdministrator, a.putPermission, put)
	h("/api/permissions/{vhost}/{user}", levelAdministrator, a.deletePermission, del)

	h("/api/exchanges", levelManagement, a.listExchanges, get)
	h("/api/exchanges/{vhost}", levelManagement, a.listExchanges, get)
	h("/api/exchanges/{vhost}/{name}", levelManagement, a.getExchange, get)
	h("/api/exchanges/{vhost}/{name}", levelManagement, a.putExchange, put)
	h("/api/exchanges/{vhost}/{name}", levelManagement, a.deleteExchange, del)
	h("/api/exchanges/{vhost}/{name}/bindings/source", levelManagement, a.bindingsOf("source"), get)
	h("/api/exchanges/{vhost}/{name}/bindings/destination", levelManagement, a.bindingsOf("edest"), get)
	h("/api/exchanges/{vhost}/{name}/publish", levelManagement, a.publish, post)

	h("/api/queues", levelManagement, a.listQueues, get)
	h("/api/queues/{vhost}", levelManagement, a.listQueues, get)
	h("/api/queues/{vhost}/{name}", levelManagement, a.getQueue, get)
	h("/api/queues/{vhost}/{name}", levelManagement, a.putQueue, put)
	h("/api/queues/{vhost}/{name}", levelManagement, a.deleteQueue, del)
	h("/api/queues/{vhost}/{name}/contents", levelManagement, a.purgeQueue, del)
	h("/api/queues/{vhost}/{name}/get", levelManagement, a.getMessages, post)
	h("/api/queues/{vhost}/{name}/bindings", levelManagement, a.bindingsOf("qdest"), get)
	h("/api/queues/{vhost}/{name}/browse", levelManagement, a.browse, get)
	h("/api/queues/{vhost}/{name}/consumer-offsets/{consumer}", levelManagement, a.forgetStreamConsumer, del)
	h("/api/queues/{vhost}/{name}/members", levelAdministrator, a.addQueueMember, post)
	h("/api/queues/{vhost}/{name}/members/{node}", levelAdministrator, a.deleteQueueMember, del)
	h("/api/rebalance/queues", levelAdministrator, a.rebalanceQueues, post)

	h("/api/bindings", levelManagement, a.listBindings, get)
	h("/api/bindings/{vhost}", levelManagement, a.listBindings, get)
	for _, dt := range []string{"q", "e"} {
		base := "/api/bindings/{vhost}/e/{source}/" + dt + "/{destination}"
		h(base, levelManagement, a.listBindingsBetween(dt), get)
		h(base, levelManagement, a.postBinding(dt), post)
		h(base+"/{props}", levelManagement, a.getBinding(dt), get)
		h(base+"/{props}", levelManagement, a.deleteBinding(dt), del)
	}

	h("/api/vhost-limits", levelManagement, a.listVhostLimits, get)
	hs("/api/vhost-limits/{vhost}", levelManagement, vhostMonitor, a.listVhostLimits, get)
	h("/api/vhost-limits/{vhost}/{name}", levelAdministrator, a.putLimit(false), put)
	h("/api/vhost-limits/{vhost}/{name}", levelAdministrator, a.deleteLimit(false), del)
	h("/api/user-limits", levelManagement, a.listUserLimits, get)
	h("/api/user-limits/{user}", levelAdministrator, a.listUserLimits, get)
	h("/api/user-limits/{user}/{name}", levelAdministrator, a.putLimit(true), put)
	h("/api/user-limits/{user}/{name}", levelAdministrator, a.deleteLimit(true), del)

	h("/api/policies", levelManagement, a.listPolicies, get)
	h("/api/policies/{vhost}", levelManagement, a.listPolicies, get)
	h("/api/policies/{vhost}/{name}", levelPolicymaker, a.getPolicy, get)
	h("/api/policies/{vhost}/{name}", levelPolicymaker, a.putPolicy, put)
	h("/api/policies/{vhost}/{name}", levelPolicymaker, a.deletePolicy, del)

	h("/api/parameters", levelPolicymaker, a.listParameters, get)
	h("/api/parameters/{component}", levelPolicymaker, a.listParameters, get)
	h("/api/parameters/{component}/{vhost}", levelPolicymaker, a.listParameters, get)
	h("/api/parameters/{component}/{vhost}/{name}", levelPolicymaker, a.getParameter, get)
	h("/api/parameters/{component}/{vhost}/{name}", levelPolicymaker, a.putParameter, put)
	h("/api/parameters/{component}/{vhost}/{name}", levelPolicymaker, a.deleteParameter, del)
	h("/api/shovels", levelManagement, a.listShovels, get)
	h("/api/shovels/{vhost}", levelManagement, a.listShovels, get)
	h("/api/shovels/vhost/{vhost}/{name}", levelManagement, a.getShovel, get)
	h("/api/shovels/vhost/{vhost}/{name}/restart", levelPolicymaker, a.restartShovel, del)
	h("/api/federation-links/state/down", levelMonitoring, a.listFederationLinks, get)
	h("/api/federation-links/{vhost}/state/down", levelMonitoring, a.listFederationLinks, get)
	h("/api/federation-links/vhost/{vhost}/{id}/{node}/restart", levelMonitoring, a.restartFederationLink, del)
	h("/api/federation-links", levelMonitoring, a.listFederationLinks, get)
	h("/api/federation-links/{vhost}", levelMonitoring, a.listFederationLinks, get)
	h("/api/global-parameters", levelPolicymaker, a.listGlobalParameters, get)
	h("/api/global-parameters/{name}", levelPolicymaker, a.getGlobalParameter, get)
	h("/api/global-parameters/{name}", levelPolicymaker, a.putGlobalParameter, put)
	h("/api/global-parameters/{name}", levelPolicymaker, a.deleteGlobalParameter, del)

	h("/api/definitions", levelAdministrator, a.exportDefinitions, get)
	h("/api/definitions", levelAdministrator, a.importDefinitions, post)
	h("/api/definitions/{vhost}", levelAdministrator, a.exportDefinitions, get)
	h("/api/definitions/{vhost}", levelAdministrator, a.importDefinitions, post)

	// The console: every other GET outside /api is one of its files.
	console := web.Handler()
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodGet && !strings.HasPrefix(req.URL.Path, "/api/") {
			console.ServeHTTP(w, req)
			return
		}
		notFound(w)
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusMethodNotAllowed, errBody("method_not_allowed", "Method Not Allowed"))
	})
	return r
}

// auth checks HTTP basic credentials and the user's tags, with RabbitMQ's
// 401 bodies.
//
// A path with a {vhost} also needs access to that vhost (sc) from every
// user but an administrator; administrator-level endpoints check no vhost.
func (a *api) auth(h http.HandlerFunc, l level, sc scope) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		var tags []string
		if ok {
			tags, ok = a.b.Authenticate(user, pass)
		}
		if !ok {
			// Scripts (the console) say so, and get no challenge: a browser
			// would answer it with its own password dialog.
			if r.Header.Get("X-Requested-With") != "XMLHttpRequest" {
				w.Header().Set("WWW-Authenticate", `Basic realm="RabbitMQ Management"`)
			}
			writeJSON(w, http.StatusUnauthorized, errBody("not_authorized", "Login failed"))
			return
		}
		p := principal{name: user, tags: tags}
		if !p.reaches(levelManagement) {
			writeJSON(w, http.StatusUnauthorized, errBody("not_authorised", levelRefusal[levelManagement]))
			return
		}
		if !p.reaches(l) {
			writeJSON(w, http.StatusUnauthorized, errBody("not_authorised", levelRefusal[l]))
			return
		}
		if _, ok := mux.Vars(r)["vhost"]; ok && sc != vhostFiltered && l != levelAdministrator && !p.has("administrator") {
			vhost := var_(r, "vhost")
			if !(sc == vhostMonitor && p.has("monitoring")) && !a.hasPermissions(p.name, vhost) {
				reason := "User not authorised to access virtual host"
				if l == levelPolicymaker {
					reason = levelRefusal[l]
				}
				writeJSON(w, http.StatusUnauthorized, errBody("not_authorised", reason))
				return
			}
		}
		h(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, p)))
	})
}

// var_ returns a decoded path variable.
func var_(r *http.Request, name string) string {
	v := mux.Vars(r)[name]
	if d, err := url.PathUnescape(v); err == nil {
		return d
	}
	return v
}

func errBody(e, reason string) map[string]string {
	return map[string]string{"error": e, "reason": reason}
}

func notFound(w http.ResponseWriter) {
	writeJSON(w, http.StatusNotFound, errBody("Object Not Found", "Not Found"))
}

func badRequest(w http.ResponseWriter, reason string) {
	writeJSON(w, http.StatusBadRequest, errBody("bad_request", reason))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// created answers 201 for a new object and 204 for an existing one.
func created(w http.ResponseWriter, isNew bool) {
	if isNew {
		w.WriteHeader(http.StatusCreated)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// readBody decodes a JSON object body; numbers stay json.Number. An empty
// body is an empty object.
func readBody(r *http.Request, into any) error {
	data, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		return err
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		data = []byte("{}")
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.UseNumber()
	if err := dec.Decode(into); err != nil {
		var bv *badValue
		if errors.As(err, &bv) {
			return bv
		}
		return errors.New("Malformed JSON: " + err.Error())
	}
	return nil
}

// unavailable answers 503 for a metadata change the cluster could not
// commit (no majority reachable) and reports whether it did.
func unavailable(w http.ResponseWriter, err error) bool {
	if !errors.Is(err, server.ErrNoQuorum) {
		return false
	}
	writeJSON(w, http.StatusServiceUnavailable, errBody("unavailable", err.Error()))
	return true
}

// amqpFailure answers for a refused AMQP operation as RabbitMQ's API does:
// 404 for a missing object, 401 for a permission refusal, 400 otherwise
// with the reason text (without its "NAME - " prefix).
func amqpFailure(w http.ResponseWriter, err error) {
	if unavailable(w, err) {
		return
	}
	var ae *amqp.Error
	if !errors.As(err, &ae) {
		if errors.Is(err, server.ErrNotFound) {
			notFound(w)
			return
		}
		if errors.Is(err, server.ErrAccessRefused) {
			writeJSON(w, http.StatusUnauthorized, errBody("not_authorised", "Access refused."))
			return
		}
		writeJSON(w, http.StatusInternalServerError, errBody("internal_error", err.Error()))
		return
	}
	reason := ae.Text
	if i := strings.Index(reason, " - "); i >= 0 {
		reason = reason[i+3:]
	}
	switch ae.Code {
	case amqp.NotFound:
		writeJSON(w, http.StatusNotFound, errBody("Object Not Found", reason))
	case amqp.AccessRefused:
		// RabbitMQ's API does not pass the AMQP text on.
		writeJSON(w, http.StatusUnauthorized, errBody("not_authorised", "Access refused."))
	default:
		badRequest(w, reason)
	}
}

// direct opens a session as the request's user on vhost.
func (a *api) direct(w http.ResponseWriter, r *http.Request, vhost string) *server.Direct {
	d, err := a.b.OpenDirect(who(r).name, vhost)
	if err != nil {
		if errors.Is(err, server.ErrNotFound) {
			notFound(w)
		} else {
			writeJSON(w, http.StatusUnauthorized, errBody("not_authorised", "Access refused."))
		}
		return nil
	}
	return d
}

// vhostVisible reports whether the user may see vhost's objects (queues,
// exchanges, bindings, policies, consumers) in a list.
func (a *api) vhostVisible(p principal, vhost string) bool {
	return p.has("administrator") || a.hasPermissions(p.name, vhost)
}

// hasPermissions reports whether user has permissions on vhost (RabbitMQ's
// check_vhost_access for the internal backend).
func (a *api) hasPermissions(user, vhost string) bool {
	u, ok := a.b.UserInfo(user)
	if !ok {
		return false
	}
	_, ok = u.Permissions[vhost]
	return ok
}

func msNow() int64 { return time.Now().UnixMilli() }
