package authhttp

// Patterns returns the patterns of every route in the route table.
func (s *Server) Patterns() []string {
	out := make([]string, 0, len(s.routes))
	for _, r := range s.routes {
		out = append(out, r.pattern)
	}
	return out
}
