package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/hestami/hestami/auth"
	"github.com/hestami/hestami/postgres"
)

func (p *Program) authCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "auth",
		Short: "The sign-in service: serve it, and manage its users and roles",
		Long: `hestami auth serve runs the platform's sign-in service (Google, Microsoft Entra ID,
LinkedIn and GitHub sign-in, sessions, roles, audit, and the OpenID Connect provider
the Next.js frontend signs in through). The other commands work on its database
directly (HESTAMI_DATABASE_URL, else the libpq variables): the first administrator
is created from the command line. See docs/auth.md.`,
	}
	cmd.AddCommand(p.authServeCommand(), p.authUsersCommand(), p.authRolesCommand())
	return cmd
}

// authStore opens the auth service's database, applying pending migrations if
// auth.migrate is on. close releases it.
func (p *Program) authStore(ctx context.Context) (store *postgres.AuthStore, pool *pgxpool.Pool, err error) {
	pool, err = postgres.OpenPool(ctx, p.cfg.Auth.DatabaseURL)
	if err != nil {
		return nil, nil, err
	}
	if p.cfg.Auth.Migrate {
		if _, err := postgres.MigrateUp(ctx, pool, p.logger); err != nil {
			pool.Close()
			return nil, nil, fmt.Errorf("migrate the auth database: %w", err)
		}
	}
	return postgres.NewAuthStore(pool), pool, nil
}

// cliClient describes the command line for the audit log: OS user and host.
func cliClient() auth.Client {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return auth.Client{UserAgent: fmt.Sprintf("hestami-cli %s@%s", name, host)}
}

func (p *Program) authUsersCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "users", Short: "Create and list accounts"}
	var n struct {
		typ, email, name string
		roles            []string
	}
	create := &cobra.Command{
		Use:   "create --type staff|owner|provider --email ADDRESS [--role ROLE]...",
		Short: "Create an account that its owner claims at first sign-in",
		Long: `Creates an account with the given email, taken as verified. Its owner claims it the
first time they sign in with a provider that verified the same email (Google,
LinkedIn, GitHub's primary verified email; Microsoft only with a verified-domain
claim). This is how the first administrator is made.`,
		Example: `  hestami auth users create --type staff --role staff:admin --email ana@hestami.example --name "Ana Lima"
  hestami auth users create --type staff --role staff:ops --email ops@hestami.example --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			store, pool, err := p.authStore(ctx)
			if err != nil {
				return err
			}
			defer pool.Close()
			svc := auth.NewService(store, nil, auth.DefaultConfig(), time.Now, p.logger)
			u, err := svc.CreateUser(ctx, nil, auth.NewUser{Type: auth.UserType(n.typ), Email: n.email, Name: n.name, Roles: n.roles}, cliClient())
			if err != nil {
				return cliAuthError(err)
			}
			if jsonOut(cmd) {
				return p.printJSON(userJSON(u))
			}
			fmt.Fprintf(p.Stdout, "created %s account %s for %s, roles %s\n", u.Type, u.ID, u.Email, strings.Join(u.Roles, ", "))
			fmt.Fprintf(p.Stdout, "They sign in at %s/signin with a provider account whose verified email is %s.\n", strings.TrimRight(p.cfg.Auth.PublicURL, "/"), u.Email)
			return nil
		},
	}
	create.Flags().StringVar(&n.typ, "type", "", "account type: staff, owner or provider (required)")
	create.Flags().StringVar(&n.email, "email", "", "email address the owner signs in with (required)")
	create.Flags().StringVar(&n.name, "name", "", "display name")
	create.Flags().StringArrayVar(&n.roles, "role", nil, "role to give (repeatable; hestami auth roles lists them); default: the type's")
	create.Flags().Bool("json", false, "print the account as JSON")
	_ = create.MarkFlagRequired("type")
	_ = create.MarkFlagRequired("email")

	var f struct {
		typ, query string
		limit      int
	}
	list := &cobra.Command{
		Use:     "list [--type T] [--query TEXT]",
		Short:   "List accounts",
		Example: "  hestami auth users list --type staff\n  hestami auth users list --query lima --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			store, pool, err := p.authStore(ctx)
			if err != nil {
				return err
			}
			defer pool.Close()
			users, err := store.Users(ctx, auth.UserFilter{Type: auth.UserType(f.typ), Query: f.query, Limit: f.limit})
			if err != nil {
				return err
			}
			if jsonOut(cmd) {
				out := make([]any, 0, len(users))
				for _, u := range users {
					out = append(out, userJSON(u))
				}
				return p.printJSON(out)
			}
			tw := tabwriter.NewWriter(p.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tTYPE\tEMAIL\tNAME\tROLES\tCREATED\tSTATE")
			for _, u := range users {
				state := "active"
				if u.Disabled {
					state = "disabled"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", u.ID, u.Type, u.Email, u.Name, strings.Join(u.Roles, ","), u.CreatedAt.UTC().Format(time.DateTime), state)
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&f.typ, "type", "", "only accounts of this type")
	list.Flags().StringVar(&f.query, "query", "", "only accounts whose email or name contains this")
	list.Flags().IntVar(&f.limit, "limit", 100, "at most this many")
	list.Flags().Bool("json", false, "print JSON")
	cmd.AddCommand(create, list)
	return cmd
}

func (p *Program) authRolesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "roles",
		Short: "List the roles and the permissions each grants",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if jsonOut(cmd) {
				return p.printJSON(auth.Roles)
			}
			tw := tabwriter.NewWriter(p.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ROLE\tFOR\tPERMISSIONS\tDESCRIPTION")
			for _, r := range auth.Roles {
				types := make([]string, len(r.For))
				for i, t := range r.For {
					types[i] = string(t)
				}
				perms := make([]string, len(r.Permissions))
				for i, p := range r.Permissions {
					perms[i] = string(p)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, strings.Join(types, ","), strings.Join(perms, ","), r.Description)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().Bool("json", false, "print JSON")
	return cmd
}

func jsonOut(cmd *cobra.Command) bool {
	v, _ := cmd.Flags().GetBool("json")
	return v
}

// userJSON is an account as the CLI prints it.
func userJSON(u *auth.User) map[string]any {
	return map[string]any{
		"id": u.ID, "type": u.Type, "email": u.Email, "email_verified": u.EmailVerified, "name": u.Name,
		"roles": u.Roles, "disabled": u.Disabled, "created_at": u.CreatedAt.UTC(),
	}
}

// cliAuthError turns the service's errors into what the command line says.
func cliAuthError(err error) error {
	var e *auth.Error
	if errors.As(err, &e) && e.Code != auth.CodeInternal {
		return usageError{errors.New(e.Message)}
	}
	return err
}
