package mgmt

import (
	"encoding/json"
	"net/http"

	"github.com/gorilla/mux"
)

// Broker is what the API needs from the broker.
type Broker interface {
	ConnectionCount() int
}

// NewHandler returns the HTTP handler of the API.
func NewHandler(b Broker) http.Handler {
	r := mux.NewRouter()
	ok := func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	}
	r.HandleFunc("/api/health/checks/alive", ok).Methods(http.MethodGet)
	r.HandleFunc("/api/health/checks/alarms", ok).Methods(http.MethodGet)
	r.HandleFunc("/healthz", ok).Methods(http.MethodGet)
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "Object Not Found", "reason": "Not Found"})
	})
	return r
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
