// A webhook receiver in Go, verifying with the Standard Webhooks Go library.
//
//	WEBHOOK_SECRET=whsec_... go run . 8003
//
// Prints one line per request: `verified <webhook-id> <type>` (answered 204) or
// `rejected <webhook-id>` (answered 400).
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

const maxBody = 1 << 20

func main() {
	webhook, err := standardwebhooks.NewWebhook(os.Getenv("WEBHOOK_SECRET")) // takes the whsec_ prefix
	if err != nil {
		log.Fatal(err)
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
		id := r.Header.Get("webhook-id")
		if err == nil {
			err = webhook.Verify(body, r.Header) // signature and timestamp, on the raw body
		}
		if err != nil {
			fmt.Printf("rejected %s\n", id)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var event struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(body, &event)
		fmt.Printf("verified %s %s\n", id, event.Type)
		w.WriteHeader(http.StatusNoContent)
	})
	log.Fatal(http.ListenAndServe("127.0.0.1:"+os.Args[1], nil))
}
