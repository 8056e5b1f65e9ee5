// Package docs is the operator and developer documentation, in Markdown. It holds no
// code: it is a Go package only so that its tests keep the documentation true — every
// hestami command it shows exists with the flags it uses, every link between the
// documents resolves, and the recovery runbooks run, step by step, against a real
// PostgreSQL server (see runbooks_test.go and docs/runbooks/README.md).
package docs
