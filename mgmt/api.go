package mgmt

import (
	"encoding/json"
	"net/http"
	"slices"
	"time"

	"github.com/gorilla/mux"

	"github.com/warren-mq/warren/amqp/server"
)

// Broker is what the API needs from the broker.
type Broker interface {
	Authenticate(user, pass string) (tags []string, ok bool)
	Connections() []server.ConnectionInfo
	CloseConnection(name, reason string) bool
}

type api struct {
	b Broker
}

// NewHandler returns the HTTP handler of the API.
func NewHandler(b Broker) http.Handler {
	a := &api{b: b}
	r := mux.NewRouter()
	r.StrictSlash(false)
	ok := func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	}
	r.HandleFunc("/api/health/checks/alive", ok).Methods(http.MethodGet)
	r.HandleFunc("/api/health/checks/alarms", ok).Methods(http.MethodGet)
	r.HandleFunc("/healthz", ok).Methods(http.MethodGet)
	r.Handle("/api/connections", a.auth(a.listConnections, "monitoring")).Methods(http.MethodGet)
	r.Handle("/api/connections/", a.auth(a.listConnections, "monitoring")).Methods(http.MethodGet)
	r.Handle("/api/connections/{name}", a.auth(a.deleteConnection, "monitoring")).Methods(http.MethodDelete)
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "Object Not Found", "reason": "Not Found"})
	})
	return r
}

// auth checks HTTP basic credentials and that the user has one of the tags
// (administrator always passes), with RabbitMQ's 401 bodies.
func (a *api) auth(h http.HandlerFunc, tag string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		var tags []string
		if ok {
			tags, ok = a.b.Authenticate(user, pass)
		}
		if !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="RabbitMQ Management"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "not_authorized", "reason": "Login failed"})
			return
		}
		if !slices.Contains(tags, "administrator") && !slices.Contains(tags, tag) {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "not_authorised", "reason": "Not monitor user"})
			return
		}
		h(w, r)
	})
}

func (a *api) listConnections(w http.ResponseWriter, _ *http.Request) {
	conns := a.b.Connections()
	out := make([]map[string]any, 0, len(conns))
	for _, c := range conns {
		out = append(out, map[string]any{
			"name":              c.Name,
			"user":              c.User,
			"vhost":             c.Vhost,
			"peer_host":         c.PeerHost,
			"peer_port":         c.PeerPort,
			"host":              c.Host,
			"port":              c.Port,
			"channels":          c.Channels,
			"client_properties": c.ClientProperties,
			"connected_at":      c.ConnectedAt.UnixMilli(),
			"frame_max":         c.FrameMax,
			"channel_max":       c.ChannelMax,
			"timeout":           int(c.Heartbeat / time.Second),
			"protocol":          "AMQP 0-9-1",
			"type":              "network",
			"state":             "running",
			"node":              "warren@localhost",
			"ssl":               c.SSL,
			"ssl_protocol":      nullIfEmpty(c.SSLProtocol),
			"peer_cert_subject": nullIfEmpty(c.PeerCertSubject),
		})
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *api) deleteConnection(w http.ResponseWriter, r *http.Request) {
	name := mux.Vars(r)["name"]
	if !a.b.CloseConnection(name, r.Header.Get("X-Reason")) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "Object Not Found", "reason": "Not Found"})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	// An encoding error here means the client went away mid-response;
	// there is no one left to tell.
	_ = json.NewEncoder(w).Encode(v)
}

// nullIfEmpty renders "" as JSON null, as RabbitMQ does for absent values.
func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}
