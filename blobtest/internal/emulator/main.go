// Command emulator serves an S3 (gofakes3) or Google Cloud Storage (fake-gcs-server)
// emulator on a loopback port, for hestami's tests. It runs in a process of its own so
// that the objects it keeps in memory do not count against the memory a test measures
// in the client.
//
// It listens on 127.0.0.1:0, prints "listening on ADDR" on stdout once it accepts
// connections, and exits when its standard input closes (the test process ended) or
// on SIGTERM.
//
// Usage: emulator -kind s3|gcs [-external-url URL]
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/fsouza/fake-gcs-server/fakestorage"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

func main() {
	kind := flag.String("kind", "", "s3 or gcs")
	external := flag.String("external-url", "", "the URL clients reach this server at (gcs: resumable upload locations)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("emulator: ")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	var h http.Handler
	switch *kind {
	case "s3":
		backend := s3mem.New()
		h = conditionalComplete(backend, gofakes3.New(backend).Server())
	case "gcs":
		url := *external
		if url == "" {
			url = "http://" + ln.Addr().String()
		}
		srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{NoListener: true, Scheme: "http", ExternalURL: url, PublicHost: strings.TrimPrefix(url, "http://")})
		if err != nil {
			log.Fatal(err)
		}
		h = srv.HTTPHandler()
	default:
		log.Fatalf("-kind %q: want s3 or gcs", *kind)
	}

	go func() {
		// The test process holds our stdin: when it ends, so do we.
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	go func() {
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
		<-c
		os.Exit(0)
	}()
	fmt.Printf("listening on %s\n", ln.Addr())
	log.Fatal(http.Serve(ln, h))
}

// conditionalComplete adds to gofakes3 what S3 does and gofakes3 v1.2.0 does not:
// CompleteMultipartUpload with If-None-Match: * fails with 412 PreconditionFailed when
// the object exists. Conditional writes are serialized so the check and the write
// are one atomic step, as in S3.
func conditionalComplete(backend gofakes3.Backend, next http.Handler) http.Handler {
	var mu sync.Mutex
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("If-None-Match") != "*" || (r.Method != http.MethodPut && r.Method != http.MethodPost) {
			next.ServeHTTP(w, r)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if r.Method == http.MethodPost && r.URL.Query().Get("uploadId") != "" {
			bucket, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
			if obj, err := backend.HeadObject(bucket, key); err == nil {
				if obj.Contents != nil {
					obj.Contents.Close()
				}
				w.Header().Set("Content-Type", "application/xml")
				w.WriteHeader(http.StatusPreconditionFailed)
				var b bytes.Buffer
				fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message><Condition>If-None-Match</Condition><Resource>/%s/%s</Resource></Error>`, bucket, key)
				_, _ = w.Write(b.Bytes())
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
