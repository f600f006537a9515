package mgmt

import "encoding/json"

// visibleItems turns the statuses a plugin-like component reports (shovels,
// federation links) into list items by their JSON, keeping those of the
// vhosts p may see.
func visibleItems[S any](a *api, p principal, list []S, vhostOf func(S) string) []item {
	items := []item{}
	for _, s := range list {
		if !a.vhostVisible(p, vhostOf(s)) {
			continue
		}
		raw, _ := json.Marshal(s) // a status always encodes
		var it item
		if json.Unmarshal(raw, &it) == nil {
			items = append(items, it)
		}
	}
	return items
}
