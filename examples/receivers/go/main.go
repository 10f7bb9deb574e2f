// A webhook receiver in Go, verifying with the Standard Webhooks Go library.
//
//	WEBHOOK_SECRET=whsec_... go run . 8003
//	WEBHOOK_SECRET=whpk_... go run . 8003   (an ed25519 endpoint: v1a, crypto/ed25519)
//
// Prints one line per request: `verified <webhook-id> <type>` (answered 204) or
// `rejected <webhook-id>` (answered 400).
package main

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

const maxBody = 1 << 20
const toleranceS = 300

type verifier interface {
	Verify(body []byte, headers http.Header) error
}

// publicKeyWebhook checks v1a as the Standard Webhooks spec defines it: an ed25519 signature of
// "{webhook-id}.{webhook-timestamp}.{body}" with the whpk_ public key.
type publicKeyWebhook struct{ key ed25519.PublicKey }

func (p publicKeyWebhook) Verify(body []byte, headers http.Header) error {
	timestamp, err := strconv.ParseInt(headers.Get("webhook-timestamp"), 10, 64)
	if err != nil || math.Abs(float64(time.Now().Unix()-timestamp)) > toleranceS {
		return errors.New("timestamp too far from now")
	}
	signed := append([]byte(headers.Get("webhook-id")+"."+headers.Get("webhook-timestamp")+"."), body...)
	for _, entry := range strings.Split(headers.Get("webhook-signature"), " ") {
		version, signature, _ := strings.Cut(entry, ",")
		raw, err := base64.StdEncoding.DecodeString(signature)
		if version == "v1a" && err == nil && ed25519.Verify(p.key, signed, raw) {
			return nil
		}
	}
	return errors.New("no v1a signature verifies")
}

func newVerifier(secret string) (verifier, error) {
	if strings.HasPrefix(secret, "whpk_") {
		key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whpk_"))
		if err != nil || len(key) != ed25519.PublicKeySize {
			return nil, errors.New("not an ed25519 public key")
		}
		return publicKeyWebhook{ed25519.PublicKey(key)}, nil
	}
	return standardwebhooks.NewWebhook(secret) // takes the whsec_ prefix
}

func main() {
	webhook, err := newVerifier(os.Getenv("WEBHOOK_SECRET"))
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
