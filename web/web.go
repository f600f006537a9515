// Package web is Warren's management console: a single-page app in plain
// HTML, CSS and JavaScript, embedded in the binary (no CDN, no build step,
// works offline) and served by the management listener at /. It speaks
// only the management API, with the same users and permissions.
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var files embed.FS

// Handler serves the console's files; any path that is not a file gets
// index.html, so deep links (#/queue/...) and reloads work.
func Handler() http.Handler {
	root, _ := fs.Sub(files, "static")
	fileServer := http.FileServer(http.FS(root))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'")
		if r.URL.Path != "/" {
			if f, err := root.Open(r.URL.Path[1:]); err == nil {
				f.Close()
				fileServer.ServeHTTP(w, r)
				return
			}
		}
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, root, "index.html")
	})
}
