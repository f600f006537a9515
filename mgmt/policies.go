package mgmt

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

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

// policyFrom reads a policy body as RabbitMQ does: a missing pattern or
// definition is Erlang's key_missing term, and priority must be a JSON
// number (a string, even of digits, is refused, with RabbitMQ's text).
func policyFrom(vhost, name string, body map[string]any) (server.Policy, error) {
	p := server.Policy{Vhost: vhost, Name: name}
	for _, k := range []string{"pattern", "definition"} {
		if _, ok := body[k]; !ok {
			return p, errors.New("[{key_missing," + k + "}]")
		}
	}
	pat, ok := body["pattern"].(string)
	if !ok {
		return p, fmt.Errorf("Validation failed\n\npattern should be a binary but was %v\n", body["pattern"])
	}
	p.Pattern = pat
	def, ok := body["definition"].(map[string]any)
	if !ok {
		return p, errors.New("Validation failed\n\ndefinition must be an object\n")
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
		n, isNum := pr.(json.Number)
		i, err := n.Int64()
		if !isNum || err != nil {
			return p, fmt.Errorf("Validation failed\n\npriority should be a number, actually was %s\n", erlangTerm(pr))
		}
		p.Priority = int(i)
	}
	return p, nil
}

// erlangTerm writes a JSON value as RabbitMQ's validation messages show it
// (a string is a binary, <<"...">>).
func erlangTerm(v any) string {
	if s, ok := v.(string); ok {
		return fmt.Sprintf("<<%q>>", s)
	}
	return fmt.Sprint(v)
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
