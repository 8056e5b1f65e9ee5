// Package blob stores a repository's objects in a cloud object store through
// gocloud.dev/blob: Amazon S3 (and S3-compatible stores), Azure Blob Storage and Google
// Cloud Storage, each opened from a URL in gocloud's forms:
//
//	s3://bucket/some/prefix?region=eu-west-1
//	azblob://container/some/prefix
//	gs://bucket/some/prefix
//
// The URL's path is a key prefix: every object lives under it. Credentials come from
// each cloud's default chain (environment, shared config files, workload identity,
// instance metadata), never from the URL. Only TLS endpoints are accepted unless
// Options.AllowHTTP is set, which is meant for local emulators.
//
// A Put streams its reader to the store in parts of Options.PartSize, at most
// Options.UploadConcurrency at once, so memory stays bounded whatever the object's
// size; a failed or cancelled Put aborts the upload and leaves no object. Stat, Open,
// List and Delete are idempotent and retried with backoff on transient errors, over
// the drivers' own retries; a Put is not, since its reader cannot be rewound.
package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	gcs "cloud.google.com/go/storage"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/googleapis/gax-go/v2"
	gcblob "gocloud.dev/blob"
	_ "gocloud.dev/blob/azureblob" // registers azblob://
	_ "gocloud.dev/blob/gcsblob"   // registers gs://
	_ "gocloud.dev/blob/s3blob"    // registers s3://
	"gocloud.dev/gcerrors"
	"google.golang.org/api/googleapi"

	"github.com/hestami/hestami/backup"
)

// Schemes are the URL schemes Open accepts.
var Schemes = []string{"s3", "azblob", "gs"}

// Defaults for Options.
const (
	DefaultPartSize          = 16 << 20
	DefaultUploadConcurrency = 4
	// MinPartSize is S3's smallest multipart part.
	MinPartSize = 5 << 20
)

// Retries of idempotent operations (Stat, Open, List, Delete), on top of the drivers'.
// The SDKs already try a request 3 or 4 times with backoff; one more round after a
// pause covers a blip that outlasts their budget without tripling a real outage's
// time to fail.
const (
	retryAttempts = 2
	retryBase     = 250 * time.Millisecond
	// abortTimeout bounds aborting a failed multipart upload after its context ended.
	abortTimeout = 30 * time.Second
)

// Options tune a Storage.
type Options struct {
	// AllowHTTP accepts a plain-HTTP endpoint (an emulator on this machine). Without
	// it Open refuses every URL or environment that would send data unencrypted.
	AllowHTTP bool
	// PartSize is the size of each uploaded part (S3 multipart part, Azure block,
	// GCS chunk) and so of the buffers an upload holds; 0 means DefaultPartSize.
	// S3 allows 10,000 parts per object: the largest object is 10,000 × PartSize.
	PartSize int
	// UploadConcurrency is how many parts of one object are uploaded at once (S3,
	// Azure); 0 means DefaultUploadConcurrency.
	UploadConcurrency int
}

// Storage is a backup.Storage in a bucket (or container) of an object store.
type Storage struct {
	bucket  *gcblob.Bucket
	display string
	opts    Options
	// s3 is the bucket's S3 client, to tune its uploads (nil for other stores).
	s3 *s3.Client
	// bucketOK records that the bucket answered a listing, so a missing object is
	// reported as ErrNotFound rather than a missing bucket.
	bucketOK atomic.Bool
}

var _ backup.Storage = (*Storage)(nil)

// Open opens the storage at rawURL (s3://, azblob:// or gs://).
func Open(ctx context.Context, rawURL string, opts Options) (*Storage, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("storage URL %q: %w", rawURL, err)
	}
	u.User = nil
	display := u.String()
	switch u.Scheme {
	case "s3", "azblob", "gs":
	default:
		return nil, fmt.Errorf("storage URL %s: scheme %q is not an object store: use s3://bucket/prefix, azblob://container/prefix or gs://bucket/prefix", display, u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("storage URL %s: no bucket name: use %s://BUCKET/prefix", display, u.Scheme)
	}
	if opts.PartSize == 0 {
		opts.PartSize = DefaultPartSize
	}
	if opts.UploadConcurrency == 0 {
		opts.UploadConcurrency = DefaultUploadConcurrency
	}
	if opts.PartSize < MinPartSize {
		return nil, fmt.Errorf("storage %s: part size %d is below the minimum of 5 MiB", display, opts.PartSize)
	}
	if opts.UploadConcurrency < 1 {
		return nil, fmt.Errorf("storage %s: upload concurrency %d: want at least 1", display, opts.UploadConcurrency)
	}
	if !opts.AllowHTTP {
		if why := plainHTTP(u, os.Getenv); why != "" {
			return nil, fmt.Errorf("storage %s: %s: hestami talks to object stores over TLS only; use an https endpoint, or, "+
				"for a local emulator only, set storage.allow_insecure_http: true (HESTAMI_STORAGE_ALLOW_HTTP=1)", display, why)
		}
	}

	prefix := strings.Trim(u.Path, "/")
	q := u.Query()
	if prefix != "" && q.Has("prefix") {
		return nil, fmt.Errorf("storage URL %s: give the key prefix either as the path or as ?prefix=, not both", display)
	}
	bu := *u
	bu.Path, bu.RawPath = "", ""
	b, err := gcblob.OpenBucket(ctx, bu.String())
	if err != nil {
		return nil, fmt.Errorf("open storage %s: %w", display, err)
	}
	s := &Storage{display: display, opts: opts}
	switch u.Scheme {
	case "s3":
		var c *s3.Client
		if b.As(&c) {
			s.s3 = c
		}
	case "gs":
		// The GCS client retries idempotent calls until the context ends; bound it
		// so an outage turns into an error that says so.
		var c *gcs.Client
		if b.As(&c) {
			c.SetRetry(gcs.WithMaxAttempts(4), gcs.WithBackoff(gax.Backoff{Initial: 200 * time.Millisecond, Max: 5 * time.Second, Multiplier: 2}))
		}
	}
	if prefix != "" {
		b = gcblob.PrefixedBucket(b, prefix+"/")
	}
	s.bucket = b
	return s, nil
}

// plainHTTP says why u (with the environment the cloud SDKs read) would send data
// over plain HTTP, or returns "".
func plainHTTP(u *url.URL, getenv func(string) string) string {
	q := u.Query()
	isHTTP := func(endpoint string) bool {
		return strings.HasPrefix(strings.ToLower(strings.TrimSpace(endpoint)), "http://")
	}
	switch u.Scheme {
	case "s3":
		if e := q.Get("endpoint"); isHTTP(e) {
			return "endpoint " + e + " is plain HTTP"
		}
		if d := strings.ToLower(q.Get("disable_https")); d == "true" || d == "1" {
			return "disable_https=true turns TLS off"
		}
		if q.Get("endpoint") == "" {
			for _, k := range []string{"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"} {
				if e := getenv(k); isHTTP(e) {
					return k + "=" + e + " is plain HTTP"
				}
			}
		}
	case "azblob":
		if p := q.Get("protocol"); strings.EqualFold(p, "http") {
			return "protocol=http turns TLS off"
		}
		if q.Get("protocol") == "" && strings.EqualFold(getenv("AZURE_STORAGE_PROTOCOL"), "http") {
			return "AZURE_STORAGE_PROTOCOL=http turns TLS off"
		}
		for _, k := range []string{"AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGEBLOB_CONNECTIONSTRING"} {
			cs := strings.ToLower(getenv(k))
			if strings.Contains(cs, "defaultendpointsprotocol=http;") || strings.Contains(cs, "blobendpoint=http://") {
				return k + " names a plain-HTTP endpoint"
			}
		}
	case "gs":
		if h := getenv("STORAGE_EMULATOR_HOST"); h != "" {
			return "STORAGE_EMULATOR_HOST=" + h + " is reached over plain HTTP"
		}
		if h := getenv("STORAGE_EMULATOR_HOST_GRPC"); h != "" && q.Get("grpc") != "" {
			return "STORAGE_EMULATOR_HOST_GRPC=" + h + " is reached without TLS"
		}
	}
	return ""
}

// String returns the storage's URL (it never holds secrets: credentials come from
// the environment).
func (s *Storage) String() string { return s.display }

// Close releases the bucket's connections.
func (s *Storage) Close() error { return s.bucket.Close() }

func checkKey(key string) error {
	if key == "" || strings.HasPrefix(key, "/") || strings.Contains(key, "\\") {
		return fmt.Errorf("invalid object key %q", key)
	}
	for _, part := range strings.Split(key, "/") {
		if part == "" || part == "." || part == ".." {
			return fmt.Errorf("invalid object key %q", key)
		}
	}
	return nil
}

// Put streams r into the object key; see backup.Storage.
func (s *Storage) Put(ctx context.Context, key string, r io.Reader, ifAbsent bool) error {
	if err := checkKey(key); err != nil {
		return err
	}
	err := s.put(ctx, key, r, ifAbsent)
	if err == nil {
		return nil
	}
	if ifAbsent {
		switch gcerrors.Code(err) {
		case gcerrors.FailedPrecondition, gcerrors.AlreadyExists:
			return fmt.Errorf("put %s: %w", key, backup.ErrExist)
		}
		// S3 answers 409 ConditionalRequestConflict to a conditional write racing
		// another one for the same key: if that one stored the object, ours lost.
		if httpStatus(err) == http.StatusConflict && ctx.Err() == nil {
			if _, serr := s.Stat(ctx, key); serr == nil {
				return fmt.Errorf("put %s: %w", key, backup.ErrExist)
			}
		}
	}
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		err = fmt.Errorf("%w (%w)", ctxErr, err)
	}
	return fmt.Errorf("put %s in %s: %w", key, s.display, err)
}

func (s *Storage) put(ctx context.Context, key string, r io.Reader, ifAbsent bool) error {
	// Cancelling the writer's context before Close is how gocloud aborts an upload:
	// every driver then drops what it sent (S3 aborts the multipart upload, GCS
	// never finalizes the resumable one, Azure never commits the block list).
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := s.bucket.NewWriter(wctx, key, &gcblob.WriterOptions{
		ContentType:    "application/octet-stream",
		IfNotExist:     ifAbsent,
		BufferSize:     s.opts.PartSize,
		MaxConcurrency: s.opts.UploadConcurrency,
		BeforeWrite:    s.beforeWrite,
	})
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, r); err != nil {
		cancel()
		_ = w.Close()
		return err
	}
	if err := ctx.Err(); err != nil {
		cancel()
		_ = w.Close()
		return err
	}
	return w.Close()
}

// beforeWrite tunes S3 uploads beyond what gocloud exposes: single-request uploads
// up to one part (not a fixed 16 MiB), and a fresh context to abort a failed
// multipart upload after its own context was cancelled, so no parts are left behind.
func (s *Storage) beforeWrite(as func(any) bool) error {
	var tm *transfermanager.Client
	if s.s3 == nil || !as(&tm) {
		return nil
	}
	part := int64(s.opts.PartSize)
	*tm = *transfermanager.New(s.s3, func(o *transfermanager.Options) {
		o.PartSizeBytes = part
		o.MultipartUploadThreshold = part
		o.Concurrency = s.opts.UploadConcurrency
		o.FailTimeout = abortTimeout
		o.RequestChecksumCalculation = s.s3.Options().RequestChecksumCalculation
	})
	return nil
}

// Open opens the object for reading; see backup.Storage.
func (s *Storage) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	var rc io.ReadCloser
	err := s.retry(ctx, func() error {
		r, err := s.bucket.NewReader(ctx, key, nil)
		if err != nil {
			return err
		}
		rc = r
		return nil
	})
	if err != nil {
		return nil, s.keyError(ctx, "open", key, err)
	}
	return rc, nil
}

// Stat returns the object's size and time; see backup.Storage.
func (s *Storage) Stat(ctx context.Context, key string) (backup.ObjectInfo, error) {
	if err := checkKey(key); err != nil {
		return backup.ObjectInfo{}, err
	}
	var info backup.ObjectInfo
	err := s.retry(ctx, func() error {
		a, err := s.bucket.Attributes(ctx, key)
		if err != nil {
			return err
		}
		info = backup.ObjectInfo{Key: key, Size: a.Size, ModTime: a.ModTime}
		return nil
	})
	if err != nil {
		return backup.ObjectInfo{}, s.keyError(ctx, "stat", key, err)
	}
	return info, nil
}

// List returns the objects under prefix, sorted by key, following the store's pages
// (1,000 keys each) to the end; see backup.Storage.
func (s *Storage) List(ctx context.Context, prefix string) ([]backup.ObjectInfo, error) {
	var out []backup.ObjectInfo
	token := gcblob.FirstPageToken
	for {
		var page []*gcblob.ListObject
		var next []byte
		err := s.retry(ctx, func() error {
			var err error
			page, next, err = s.bucket.ListPage(ctx, token, 1000, &gcblob.ListOptions{Prefix: prefix})
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("list %q in %s: %w", prefix, s.display, err)
		}
		for _, o := range page {
			if !o.IsDir {
				out = append(out, backup.ObjectInfo{Key: o.Key, Size: o.Size, ModTime: o.ModTime})
			}
		}
		if len(next) == 0 {
			break
		}
		token = next
	}
	s.bucketOK.Store(true)
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete removes the object; see backup.Storage.
func (s *Storage) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	err := s.retry(ctx, func() error { return s.bucket.Delete(ctx, key) })
	if err == nil {
		return nil
	}
	err = s.keyError(ctx, "delete", key, err)
	if errors.Is(err, backup.ErrNotFound) {
		return nil
	}
	return err
}

// keyError turns a failed operation on key into ErrNotFound when the object is
// missing from a bucket that exists, and otherwise into an error in the store's
// own words. A missing bucket (or container, or account) is never "not found":
// restore_command would take it for the end of the archived WAL.
func (s *Storage) keyError(ctx context.Context, op, key string, err error) error {
	if notFound(err) {
		if berr := s.checkBucket(ctx); berr != nil {
			return fmt.Errorf("%s %s: %w", op, key, berr)
		}
		return fmt.Errorf("%s %s: %w in %s", op, key, backup.ErrNotFound, s.display)
	}
	return fmt.Errorf("%s %s in %s: %w", op, key, s.display, err)
}

// checkBucket returns an error unless the bucket exists and can be listed.
func (s *Storage) checkBucket(ctx context.Context) error {
	if s.bucketOK.Load() {
		return nil
	}
	err := s.retry(ctx, func() error {
		_, _, err := s.bucket.ListPage(ctx, gcblob.FirstPageToken, 1, nil)
		return err
	})
	if err != nil {
		if notFound(err) {
			return fmt.Errorf("the bucket of %s does not exist (or its account cannot be found): create it, or fix storage.url: %v", s.display, err)
		}
		return fmt.Errorf("cannot list %s: %w", s.display, err)
	}
	s.bucketOK.Store(true)
	return nil
}

// notFound reports whether err says the object (or the bucket) does not exist.
// gocloud's gcsblob also reports 403 Forbidden as NotFound ("permission denied on
// resource, or it may not exist"): access denied is never taken for "not found".
func notFound(err error) bool {
	if gcerrors.Code(err) != gcerrors.NotFound {
		return false
	}
	st := httpStatus(err)
	return st == 0 || st == http.StatusNotFound
}

// retry runs op until it succeeds, fails for good, or retryAttempts ran out.
func (s *Storage) retry(ctx context.Context, op func() error) error {
	delay := retryBase
	for attempt := 1; ; attempt++ {
		err := op()
		if err == nil || attempt == retryAttempts || !transient(ctx, err) {
			return err
		}
		// Full jitter: concurrent clients of one store do not retry in step.
		t := time.NewTimer(delay/2 + rand.N(delay/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		delay *= 2
	}
}

// transient reports whether err may go away if the operation is tried again.
func transient(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	if st := httpStatus(err); st != 0 {
		return st == http.StatusRequestTimeout || st == http.StatusTooManyRequests || st >= 500
	}
	switch gcerrors.Code(err) {
	case gcerrors.Unknown, gcerrors.Internal, gcerrors.ResourceExhausted, gcerrors.DeadlineExceeded:
		// Unknown without an HTTP status: the connection failed (refused, reset,
		// timed out), which is worth another try.
		return true
	}
	return false
}

// httpStatus returns the HTTP status of the store's error response in err, or 0.
func httpStatus(err error) int {
	var hs interface{ HTTPStatusCode() int } // S3 (smithy, AWS SDK)
	if errors.As(err, &hs) {
		return hs.HTTPStatusCode()
	}
	var az *azcore.ResponseError
	if errors.As(err, &az) {
		return az.StatusCode
	}
	var g *googleapi.Error
	if errors.As(err, &g) {
		return g.Code
	}
	return 0
}
