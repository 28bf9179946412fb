package httpapi_test

import (
	"strings"
	"testing"

	"folio/internal/auth"
	"folio/internal/platform/problem"
)

// TestRegisterRules: each broken rule of a registration gets its answer, naming the
// fields at fault.
func TestRegisterRules(t *testing.T) {
	s := newServer(t, openSQLite(t))
	long := strings.Repeat("p", auth.MaxPassword)
	for _, tc := range []struct {
		name, body string
		status     int
		fields     []string
	}{
		{"valid", `{"email":"ok@example.com","password":"twelve chars"}`, 201, nil},
		{"longest password", `{"email":"long@example.com","password":"` + long + `"}`, 201, nil},
		{"multibyte password counts characters", `{"email":"mb@example.com","password":"ééééééééééé"}`, 422, []string{"password"}},
		{"short password", `{"email":"a@example.com","password":"eleven char"}`, 422, []string{"password"}},
		{"too long password", `{"email":"a@example.com","password":"` + long + `x"}`, 422, []string{"password"}},
		{"missing password", `{"email":"a@example.com"}`, 422, []string{"password"}},
		{"missing email", `{"password":"twelve chars"}`, 422, []string{"email"}},
		{"bad email", `{"email":"not an email","password":"twelve chars"}`, 422, []string{"email"}},
		{"both bad", `{}`, 422, []string{"email", "password"}},
		{"wrong type", `{"email":1,"password":"twelve chars"}`, 400, nil},
		{"unknown field", `{"email":"a@example.com","password":"twelve chars","admin":true}`, 400, nil},
		{"not json", `{"email":`, 400, nil},
		{"null", `null`, 400, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := s.do("POST", "/auth/register", tc.body)
			switch tc.status {
			case 201:
				if rec.Code != 201 {
					t.Fatalf("got %d, want 201: %s", rec.Code, rec.Body)
				}
			case 400:
				wantProblem(t, rec, 400, problem.TypeMalformed)
			default:
				wantProblem(t, rec, tc.status, problem.TypeValidation, tc.fields...)
			}
		})
	}
}
