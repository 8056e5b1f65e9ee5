package blob

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"google.golang.org/api/googleapi"
)

func TestTransient(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		err  error
		want bool
	}{
		{"azure 503", context.Background(), &azcore.ResponseError{StatusCode: 503}, true},
		{"azure 429", context.Background(), fmt.Errorf("wrapped: %w", &azcore.ResponseError{StatusCode: 429}), true},
		{"azure 403", context.Background(), &azcore.ResponseError{StatusCode: 403}, false},
		{"azure 404", context.Background(), &azcore.ResponseError{StatusCode: 404}, false},
		{"gcs 500", context.Background(), &googleapi.Error{Code: 500}, true},
		{"gcs 408", context.Background(), &googleapi.Error{Code: http.StatusRequestTimeout}, true},
		{"gcs 403", context.Background(), &googleapi.Error{Code: 403}, false},
		{"connection reset", context.Background(), errors.New("read: connection reset by peer"), true},
		{"our context ended", cancelled, errors.New("read: connection reset by peer"), false},
	} {
		if got := transient(tc.ctx, tc.err); got != tc.want {
			t.Errorf("%s: transient = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestRetry(t *testing.T) {
	s := &Storage{}
	for _, tc := range []struct {
		name      string
		errs      []error // returned by successive calls; then nil
		wantCalls int
		wantErr   bool
	}{
		{"success", nil, 1, false},
		{"one transient failure", []error{&googleapi.Error{Code: 503}}, 2, false},
		{"outage: bounded", []error{&googleapi.Error{Code: 503}, &googleapi.Error{Code: 503}, &googleapi.Error{Code: 503}}, retryAttempts, true},
		{"permanent: once", []error{&googleapi.Error{Code: 403}}, 1, true},
	} {
		calls := 0
		err := s.retry(context.Background(), func() error {
			calls++
			if calls <= len(tc.errs) {
				return tc.errs[calls-1]
			}
			return nil
		})
		if calls != tc.wantCalls || (err != nil) != tc.wantErr {
			t.Errorf("%s: %d calls, err %v; want %d calls, error %v", tc.name, calls, err, tc.wantCalls, tc.wantErr)
		}
	}
}
