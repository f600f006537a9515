package mgmt

import (
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"slices"

	"github.com/warren-mq/warren/amqp/server"
)

// Runtime parameters at RabbitMQ's /api/parameters and
// /api/global-parameters (policymaker endpoints). Vhost parameters belong
// to a component; the one Warren has is "vhost-limits", whose parameter
// "limits" in each vhost is that vhost's limits (the same values as
// /api/vhost-limits), as in RabbitMQ. The broker keeps the parameters of
// the components registered with it (shovel: package shovel), which
// validate them; any other component is refused as RabbitMQ refuses one
// whose plugin is not enabled.

const limitsComponent = "vhost-limits"

// vhostParameters lists the parameters of component ("" for all) in the
// vhosts the user may see (vhost "" for all).
func (a *api) vhostParameters(p principal, component, vhost string) []item {
	items := []item{}
	if component != limitsComponent {
		for _, prm := range a.b.ParametersOf(component, vhost) {
			if a.vhostVisible(p, prm.Vhost) {
				items = append(items, item{"vhost": prm.Vhost, "component": prm.Component, "name": prm.Name, "value": prm.Value})
			}
		}
		if component != "" {
			return items
		}
	}
	for _, v := range a.b.VhostNames() {
		if (vhost != "" && v != vhost) || !a.vhostVisible(p, v) {
			continue
		}
		if l, ok := a.b.VhostLimits(v); ok && len(l) > 0 {
			items = append(items, item{"vhost": v, "component": limitsComponent, "name": "limits", "value": l})
		}
	}
	return items
}

func (a *api) listParameters(w http.ResponseWriter, r *http.Request) {
	vhost := var_(r, "vhost")
	if vhost != "" && !a.vhostExists(vhost) {
		notFound(w)
		return
	}
	writeList(w, r, a.vhostParameters(who(r), var_(r, "component"), vhost))
}

func (a *api) getParameter(w http.ResponseWriter, r *http.Request) {
	for _, it := range a.vhostParameters(who(r), var_(r, "component"), var_(r, "vhost")) {
		if it["name"] == var_(r, "name") {
			writeJSON(w, http.StatusOK, it)
			return
		}
	}
	notFound(w)
}

// componentMissing is RabbitMQ's refusal of a component it does not know.
func componentMissing(w http.ResponseWriter, component string) {
	badRequest(w, "Validation failed\n\ncomponent "+component+" not found\n")
}

func (a *api) putParameter(w http.ResponseWriter, r *http.Request) {
	value, ok := bodyValue(w, r)
	if !ok {
		return
	}
	component, vhost, name := var_(r, "component"), var_(r, "vhost"), var_(r, "name")
	if component != limitsComponent {
		a.putComponentParameter(w, server.Parameter{Component: component, Vhost: vhost, Name: name, Value: value})
		return
	}
	if name != "limits" {
		badRequest(w, "Validation failed\n\nvhost-limits parameters are named limits\n")
		return
	}
	limits, err := limitsFrom(value)
	if err != nil {
		badRequest(w, "Validation failed\n\n"+err.Error()+"\n")
		return
	}
	old, ok := a.b.VhostLimits(vhost)
	if !ok {
		notFound(w)
		return
	}
	for n := range old {
		if _, keep := limits[n]; !keep {
			a.b.SetVhostLimit(vhost, n, -1)
		}
	}
	for _, n := range slices.Sorted(maps.Keys(limits)) {
		if err := a.b.SetVhostLimit(vhost, n, limits[n]); err != nil {
			badRequest(w, "Validation failed\n\n"+err.Error()+"\n")
			return
		}
	}
	created(w, len(old) == 0)
}

func (a *api) deleteParameter(w http.ResponseWriter, r *http.Request) {
	component, vhost, name := var_(r, "component"), var_(r, "vhost"), var_(r, "name")
	if component != limitsComponent {
		if err := a.b.DeleteParameter(component, vhost, name); err != nil {
			if !unavailable(w, err) {
				notFound(w)
			}
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	old, ok := a.b.VhostLimits(vhost)
	if component != limitsComponent || name != "limits" || !ok || len(old) == 0 {
		notFound(w)
		return
	}
	for n := range old {
		a.b.SetVhostLimit(vhost, n, -1)
	}
	w.WriteHeader(http.StatusNoContent)
}

// putComponentParameter stores a parameter of a registered component.
func (a *api) putComponentParameter(w http.ResponseWriter, p server.Parameter) {
	isNew, err := a.b.PutParameter(p)
	var unknown *server.ErrUnknownComponent
	switch {
	case err == nil:
		created(w, isNew)
	case errors.As(err, &unknown):
		componentMissing(w, unknown.Component)
	case errors.Is(err, server.ErrNotFound):
		notFound(w)
	case unavailable(w, err):
	default:
		badRequest(w, "Validation failed\n\n"+err.Error()+"\n")
	}
}

// limitsFrom reads a vhost-limits value: an object of integer limits.
func limitsFrom(v any) (map[string]int64, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("value must be an object of limits")
	}
	out := make(map[string]int64, len(m))
	for k, raw := range m {
		n, ok := raw.(json.Number)
		if !ok {
			return nil, errors.New(k + " must be an integer")
		}
		i, err := n.Int64()
		if err != nil {
			return nil, errors.New(k + " must be an integer")
		}
		out[k] = i
	}
	return out, nil
}

func (a *api) listGlobalParameters(w http.ResponseWriter, r *http.Request) {
	items := []item{}
	for _, p := range a.b.GlobalParameters() {
		items = append(items, item{"name": p.Name, "value": p.Value})
	}
	writeList(w, r, items)
}

func (a *api) getGlobalParameter(w http.ResponseWriter, r *http.Request) {
	name := var_(r, "name")
	v, ok := a.b.GlobalParameter(name)
	if !ok {
		notFound(w)
		return
	}
	writeJSON(w, http.StatusOK, item{"name": name, "value": v})
}

func (a *api) putGlobalParameter(w http.ResponseWriter, r *http.Request) {
	value, ok := bodyValue(w, r)
	if !ok {
		return
	}
	isNew, err := a.b.PutGlobalParameter(var_(r, "name"), value)
	if err != nil {
		if !unavailable(w, err) {
			badRequest(w, err.Error())
		}
		return
	}
	created(w, isNew)
}

func (a *api) deleteGlobalParameter(w http.ResponseWriter, r *http.Request) {
	if err := a.b.DeleteGlobalParameter(var_(r, "name")); errors.Is(err, server.ErrNotFound) {
		notFound(w)
		return
	} else if err != nil {
		if !unavailable(w, err) {
			badRequest(w, err.Error())
		}
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// bodyValue reads a parameter body's "value", answering a body without one
// with RabbitMQ's key_missing.
func bodyValue(w http.ResponseWriter, r *http.Request) (any, bool) {
	var body map[string]any
	if err := readBody(r, &body); err != nil {
		badBody(w, err)
		return nil, false
	}
	value, ok := body["value"]
	if !ok {
		badRequest(w, "[{key_missing,value}]")
	}
	return value, ok
}
