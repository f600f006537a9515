package mgmt

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/warren-mq/warren/amqp/server"
)

func policyItem(p server.Policy) item {
	return item{"vhost": p.Vhost, "name": p.Name, "pattern": p.Pattern, "apply-to": p.ApplyTo,
		"definition": p.Definition, "priority": p.Priority}
}

func (a *api) listPolicies(w http.ResponseWriter, r *http.Request) {
	writeVhostList(a, w, r, a.b.Policies, func(p server.Policy) string { return p.Vhost }, policyItem)
}

func (a *api) getPolicy(w http.ResponseWriter, r *http.Request) {
	vhost, name := var_(r, "vhost"), var_(r, "name")
	if !a.vhostVisible(who(r), vhost) {
		notFound(w)
		return
	}
	for _, p := range a.b.Policies(vhost) {
		if p.Name == name {
			writeJSON(w, http.StatusOK, policyItem(p))
			return
		}
	}
	notFound(w)
}

// policyFrom reads a policy body: pattern and definition are required;
// priority may be a number or a numeric string.
func policyFrom(vhost, name string, body map[string]any) (server.Policy, error) {
	p := server.Policy{Vhost: vhost, Name: name}
	pat, ok := body["pattern"].(string)
	if !ok {
		return p, errors.New("Validation failed\n\npattern is mandatory (a string)\n")
	}
	p.Pattern = pat
	def, ok := body["definition"].(map[string]any)
	if !ok {
		return p, errors.New("Validation failed\n\ndefinition is mandatory (an object)\n")
	}
	p.Definition = def
	if at, ok := body["apply-to"]; ok {
		s, ok := at.(string)
		if !ok {
			return p, errors.New("Validation failed\n\napply-to must be a string\n")
		}
		p.ApplyTo = s
	}
	if pr, ok := body["priority"]; ok {
		var n int64
		var err error
		switch v := pr.(type) {
		case json.Number:
			n, err = v.Int64()
		case string:
			n, err = strconv.ParseInt(v, 10, 64)
		default:
			err = errors.New("not a number")
		}
		if err != nil {
			return p, errors.New("Validation failed\n\npriority must be an integer\n")
		}
		p.Priority = int(n)
	}
	return p, nil
}

func (a *api) putPolicy(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	if err := readBody(r, &body); err != nil {
		badBody(w, err)
		return
	}
	vhost := var_(r, "vhost")
	if !a.vhostExists(vhost) {
		notFound(w)
		return
	}
	p, err := policyFrom(vhost, var_(r, "name"), body)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	isNew, err := a.b.PutPolicy(p)
	if err != nil {
		if !unavailable(w, err) {
			badRequest(w, err.Error())
		}
		return
	}
	created(w, isNew)
}

func (a *api) deletePolicy(w http.ResponseWriter, r *http.Request) {
	if err := a.b.DeletePolicy(var_(r, "vhost"), var_(r, "name")); err != nil {
		if !unavailable(w, err) {
			notFound(w)
		}
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
