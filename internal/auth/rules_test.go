package auth_test

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"folio/internal/auth"
	"folio/internal/platform/fault"
)

func TestNormalizeEmail(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"ada@example.com", "ada@example.com", true},
		{"  Ada.Lovelace+x@Example.COM \n", "ada.lovelace+x@example.com", true},
		{"a@b.co", "a@b.co", true},
		{"", "", false},
		{"ada", "ada", false},
		{"ada@", "ada@", false},
		{"@example.com", "@example.com", false},
		{"ada@example", "ada@example", false},
		{"ada@@example.com", "ada@@example.com", false},
		{"a@b@example.com", "a@b@example.com", false},
		{"ada lovelace@example.com", "ada lovelace@example.com", false},
		{"ada@example..com", "ada@example..com", false},
		{"ada@-example.com", "ada@-example.com", false},
		{"ada@example.com.", "ada@example.com.", false},
		{"ad\x00a@example.com", "ad\x00a@example.com", false},
		{strings.Repeat("a", 65) + "@example.com", strings.Repeat("a", 65) + "@example.com", false},
		{"a@" + strings.Repeat("b", 250) + ".com", "a@" + strings.Repeat("b", 250) + ".com", false},
		// NFKC, then lower case: look-alike spellings are one address.
		{"Foo@Example.com", "foo@example.com", true},
		{"ｆｏｏ@example.com", "foo@example.com", true},
		{"ＦＯＯ＠ＥＸＡＭＰＬＥ．ＣＯＭ", "foo@example.com", true},
		{"ﬁle@example.com", "file@example.com", true}, // the ligature fi
		// Invisible and bidi formatting characters.
		{"\u200b", "", false},
		{"\u200b\u200c\u200d", "", false},
		{"a\u200b@example.com", "", false},
		{"a@example.com\u202e", "", false},
		{"\u2066a@example.com", "", false},
		{"\ufeffa@example.com", "", false},
		{"\xff@example.com", "", false},
	} {
		got, ok := auth.NormalizeEmail(tc.in)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("NormalizeEmail(%q): got %q, %v, want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestCheckRoles(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   *[]string
		want []string
		ok   bool
	}{
		{"missing", nil, nil, false},
		{"empty", &[]string{}, []string{}, true},
		{"one", &[]string{"editor"}, []string{"editor"}, true},
		{"canonical order, no duplicates", &[]string{"admin", "reader", "admin", "editor"}, []string{"reader", "editor", "admin"}, true},
		{"unknown", &[]string{"reader", "root"}, nil, false},
		{"case matters", &[]string{"Admin"}, nil, false},
		{"empty name", &[]string{""}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := auth.CheckRoles(tc.in)
			if !tc.ok {
				if fault.KindOf(err) != fault.Invalid {
					t.Fatalf("got %v, %v, want an Invalid error", got, err)
				}
				if fe := err.(*fault.Error); len(fe.Fields) == 0 || fe.Fields[0].Field != "roles" {
					t.Errorf("got fields %+v, want roles named", fe.Fields)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("got %v, %v, want %v", got, err, tc.want)
			}
		})
	}
}

func TestPasswordHash(t *testing.T) {
	h, err := auth.HashPassword("correct horse battery staple", auth.DefaultParams)
	if err != nil {
		t.Fatal(err)
	}
	phc := regexp.MustCompile(`^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)
	if !phc.MatchString(h) {
		t.Errorf("got hash %q, want the PHC string of argon2id m=19456,t=2,p=1 with a 16-byte salt and 32-byte key", h)
	}
	h2, _ := auth.HashPassword("correct horse battery staple", auth.DefaultParams)
	if h == h2 {
		t.Error("two hashes of one password are equal: the salt is not random")
	}
	for _, tc := range []struct {
		password string
		want     bool
	}{
		{"correct horse battery staple", true},
		{"correct horse battery stapl", false},
		{"Correct horse battery staple", false},
		{"", false},
	} {
		if got, err := auth.VerifyPassword(tc.password, h); got != tc.want || err != nil {
			t.Errorf("VerifyPassword(%q): got %v, %v, want %v", tc.password, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "plain", "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaA",
		"$argon2id$v=18$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$" + strings.Repeat("A", 43),
		"$argon2id$v=19$m=0,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$" + strings.Repeat("A", 43),
		"$argon2id$v=19$m=19456,t=2,p=1$!!$" + strings.Repeat("A", 43)} {
		if _, err := auth.VerifyPassword("x", bad); err == nil {
			t.Errorf("VerifyPassword with hash %q: got no error", bad)
		}
	}
}
