package mgmt

import (
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Listing query parameters, as RabbitMQ's API takes them: name (substring,
// or a regexp with use_regex=true), sort (a field, dotted for nested ones),
// sort_reverse, columns (comma-separated fields to keep), and page with
// page_size, which switches the answer to a page object.

type item = map[string]any

// pageSizeMax is RabbitMQ's upper bound for page_size.
const pageSizeMax = 500

func writeList(w http.ResponseWriter, r *http.Request, items []item) {
	q := r.URL.Query()
	total := len(items)
	// RabbitMQ filters by name only in paged requests.
	if name := q.Get("name"); name != "" && q.Has("page") {
		match, err := nameMatcher(name, q.Get("use_regex") == "true")
		if err != nil {
			badRequest(w, err.Error())
			return
		}
		kept := items[:0:0]
		for _, it := range items {
			if n, _ := it["name"].(string); match(n) {
				kept = append(kept, it)
			}
		}
		items = kept
	}
	if key := q.Get("sort"); key != "" {
		path := strings.Split(key, ".")
		sort.SliceStable(items, func(i, j int) bool { return less(lookup(items[i], path), lookup(items[j], path)) })
	}
	if q.Get("sort_reverse") == "true" {
		for i, j := 0, len(items)-1; i < j; i, j = i+1, j-1 {
			items[i], items[j] = items[j], items[i]
		}
	}
	filtered := len(items)
	paged := q.Has("page")
	page, size := 1, 100
	if paged {
		var err error
		if page, err = strconv.Atoi(q.Get("page")); err != nil || page < 1 {
			badRequest(w, fmt.Sprintf("Parameter \"page\" must be a positive integer, got %q", q.Get("page")))
			return
		}
		if s := q.Get("page_size"); s != "" {
			if size, err = strconv.Atoi(s); err != nil || size < 1 || size > pageSizeMax {
				badRequest(w, fmt.Sprintf("Parameter \"page_size\" must be an integer from 1 to %d, got %q", pageSizeMax, s))
				return
			}
		}
		pages := max(1, (filtered+size-1)/size)
		if page > pages {
			badRequest(w, fmt.Sprintf("Page out of range: %d > %d", page, pages))
			return
		}
		from := (page - 1) * size
		items = items[from:min(from+size, filtered)]
	}
	if cols := q.Get("columns"); cols != "" {
		items = keepColumns(items, strings.Split(cols, ","))
	}
	if !paged {
		writeJSON(w, http.StatusOK, items)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"filtered_count": filtered, "item_count": len(items), "items": items, "page": page,
		"page_count": max(1, (filtered+size-1)/size), "page_size": size, "total_count": total,
	})
}

func nameMatcher(name string, useRegex bool) (func(string) bool, error) {
	if !useRegex {
		return func(s string) bool { return strings.Contains(s, name) }, nil
	}
	re, err := regexp.Compile(name)
	if err != nil {
		return nil, fmt.Errorf("invalid regexp %q: %v", name, err)
	}
	return re.MatchString, nil
}

func lookup(it item, path []string) any {
	var cur any = it
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	return cur
}

// less orders numbers numerically, strings lexically, missing values first.
func less(a, b any) bool {
	fa, aNum := number(a)
	fb, bNum := number(b)
	switch {
	case aNum && bNum:
		return fa < fb
	case a == nil:
		return b != nil
	case b == nil:
		return false
	}
	return fmt.Sprint(a) < fmt.Sprint(b)
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case uint64:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}

func keepColumns(items []item, cols []string) []item {
	out := make([]item, len(items))
	for i, it := range items {
		o := item{}
		for _, c := range cols {
			path := strings.Split(c, ".")
			v := lookup(it, path)
			if v == nil {
				continue
			}
			// Rebuild the nesting of a dotted column.
			cur := o
			for _, p := range path[:len(path)-1] {
				next, ok := cur[p].(map[string]any)
				if !ok {
					next = map[string]any{}
					cur[p] = next
				}
				cur = next
			}
			cur[path[len(path)-1]] = v
		}
		out[i] = o
	}
	return out
}
