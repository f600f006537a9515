package mgmt

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/warren-mq/warren/amqp/server"
)

// Vhost and user limits, at RabbitMQ's /api/vhost-limits and
// /api/user-limits.

func (a *api) listVhostLimits(w http.ResponseWriter, r *http.Request) {
	items := []item{}
	only := var_(r, "vhost")
	if only != "" && !a.vhostExists(only) {
		notFound(w)
		return
	}
	p := who(r)
	for _, v := range a.b.VhostNames() {
		if (only != "" && v != only) || !(p.seesAllVhosts() || a.hasPermissions(p.name, v)) {
			continue
		}
		if l, ok := a.b.VhostLimits(v); ok && len(l) > 0 {
			items = append(items, item{"vhost": v, "value": l})
		}
	}
	writeList(w, r, items)
}

func (a *api) listUserLimits(w http.ResponseWriter, r *http.Request) {
	items := []item{}
	only := var_(r, "user")
	if only != "" {
		if _, ok := a.b.UserInfo(only); !ok {
			notFound(w)
			return
		}
	}
	p := who(r)
	for _, u := range a.b.Users() {
		// Users other than administrators see their own limits only.
		if (only == "" || u.Name == only) && (p.has("administrator") || u.Name == p.name) && len(u.Limits) > 0 {
			items = append(items, item{"user": u.Name, "value": u.Limits})
		}
	}
	writeList(w, r, items)
}

// limitValue reads {"value": N}.
func limitValue(r *http.Request) (int64, error) {
	var body map[string]any
	if err := readBody(r, &body); err != nil {
		return 0, err
	}
	v, ok := body["value"]
	if !ok {
		return 0, errors.New("[{key_missing,value}]")
	}
	n, ok := v.(json.Number)
	if !ok {
		return 0, errors.New("value must be an integer")
	}
	i, err := n.Int64()
	if err != nil {
		return 0, errors.New("value must be an integer")
	}
	return i, nil
}

func (a *api) putLimit(user bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n, err := limitValue(r)
		if err != nil {
			badRequest(w, err.Error())
			return
		}
		a.setLimit(w, r, user, n)
	}
}

func (a *api) deleteLimit(user bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { a.setLimit(w, r, user, -1) }
}

func (a *api) setLimit(w http.ResponseWriter, r *http.Request, user bool, n int64) {
	var err error
	if user {
		err = a.b.SetUserLimit(var_(r, "user"), var_(r, "name"), n)
	} else {
		err = a.b.SetVhostLimit(var_(r, "vhost"), var_(r, "name"), n)
	}
	switch {
	case errors.Is(err, server.ErrNotFound) && user:
		// RabbitMQ's answer for limits of a user that does not exist.
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "bad_request", "reason": []any{"no_such_user", var_(r, "user")}})
	case errors.Is(err, server.ErrNotFound):
		notFound(w)
	case unavailable(w, err):
	case err != nil:
		badRequest(w, err.Error())
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}
