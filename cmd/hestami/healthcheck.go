package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/cobra"
)

// healthcheckTimeout bounds one healthcheck request.
const healthcheckTimeout = 5 * time.Second

func (p *Program) healthcheckCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "healthcheck URL",
		Short: "Exit 0 if URL answers 2xx (container healthchecks in images without curl)",
		Long: `GETs URL and exits 0 on a 2xx answer, 1 otherwise (with what went wrong on
stderr), within 5 seconds. For container healthchecks: the hestami image has no shell
or curl. Only http and https URLs.`,
		Example: `  hestami healthcheck http://127.0.0.1:8080/healthz     # auth serve
  hestami healthcheck http://127.0.0.1:9187/readyz      # backup daemon`,
		Args: cobra.ExactArgs(1),
		// No configuration is needed (or read: a healthcheck must not fail on it).
		PersistentPreRunE: func(*cobra.Command, []string) error { return nil },
		RunE: func(cmd *cobra.Command, args []string) error {
			u, err := url.Parse(args[0])
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return usageError{fmt.Errorf("healthcheck: %q is not an http(s) URL", args[0])}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), healthcheckTimeout)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("healthcheck %s: %w", u.Redacted(), err)
			}
			resp.Body.Close()
			if resp.StatusCode/100 != 2 {
				return fmt.Errorf("healthcheck %s: %s", u.Redacted(), resp.Status)
			}
			return nil
		},
	}
}
