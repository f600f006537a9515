package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
)

type column struct{ header, key string }

func lookup(m map[string]any, path string) any {
	var cur any = m
	for _, p := range strings.Split(path, ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[p]
	}
	return cur
}

func cell(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case float64:
		if x == float64(int64(x)) {
			return fmt.Sprint(int64(x))
		}
		return fmt.Sprintf("%.2f", x)
	case map[string]any:
		if len(x) == 0 {
			return ""
		}
		b, _ := json.Marshal(x)
		return string(b)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = cell(e)
		}
		return strings.Join(parts, ",")
	case string:
		if strings.ContainsAny(x, "\n\r\t") {
			return strconv.Quote(x) // keep the table's rows and columns
		}
		return x
	}
	return fmt.Sprint(v)
}

// emit prints rows as a table with cols, or as JSON with --format json.
func emit(c *cli.Context, v any, cols []column) error {
	if globals.format == "json" {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	var rows []map[string]any
	switch x := v.(type) {
	case []map[string]any:
		rows = x
	case map[string]any:
		rows = []map[string]any{x}
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	hdr := make([]string, len(cols))
	for i, col := range cols {
		hdr[i] = col.header
	}
	fmt.Fprintln(tw, strings.Join(hdr, "\t"))
	for _, r := range rows {
		vals := make([]string, len(cols))
		for i, col := range cols {
			vals[i] = cell(lookup(r, col.key))
		}
		fmt.Fprintln(tw, strings.Join(vals, "\t"))
	}
	return tw.Flush()
}

// emitKV prints an object as key/value lines (table) or JSON.
func emitKV(c *cli.Context, m map[string]any, keys []column) error {
	if globals.format == "json" {
		return emit(c, m, nil)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\n", k.header, cell(lookup(m, k.key)))
	}
	return tw.Flush()
}

// parseValue reads a --arg/--header value: JSON numbers, booleans, objects
// and arrays as such, anything else as a string.
func parseValue(s string) any {
	var v any
	if err := json.Unmarshal([]byte(s), &v); err == nil {
		switch v.(type) {
		case float64, bool, map[string]any, []any:
			return v
		}
	}
	return s
}

// parsePairs reads k=v flags into a map.
func parsePairs(flag string, pairs []string) (map[string]any, error) {
	out := map[string]any{}
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, usagef("--%s wants key=value, got %q", flag, p)
		}
		out[k] = parseValue(v)
	}
	return out, nil
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
