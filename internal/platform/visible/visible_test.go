package visible

import "testing"

func TestHas(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want bool
	}{
		{"empty", "", false},
		{"latin", "Ursula K. Le Guin", true},
		{"one letter", "A", true},
		{"digits", "1984", true},
		{"punctuation", "?!", true},
		{"symbol", "★", true},
		{"emoji", "📚", true},
		{"cjk", "紫式部", true},
		{"arabic with bidi marks around", "\u200fنجيب محفوظ\u200f", true},
		{"hebrew", "עגנון", true},
		{"accented", "Émile Zola", true},
		{"letter with combining mark", "e\u0301", true},
		{"letter and zero-width joiner", "a\u200d", true},
		{"spaces", "   ", false},
		{"no-break and ideographic spaces", "\u00a0\u3000\u2007", false},
		{"zero-width space", "\u200b", false},
		{"zero-width joiners", "\u200c\u200d\u2060", false},
		{"byte order mark", "\ufeff", false},
		{"soft hyphen", "\u00ad", false},
		{"left-to-right and right-to-left marks", "\u200e\u200f\u061c", false},
		{"bidi embeddings and override", "\u202a\u202b\u202c\u202d\u202e", false},
		{"bidi isolates", "\u2066\u2067\u2068\u2069", false},
		{"mongolian vowel separator", "\u180e", false},
		{"tags", "\U000E0041\U000E007F", false},
		{"variation selectors", "\ufe0f\U000E0100", false},
		{"hangul fillers", "\u3164\u115f\u1160\uffa0", false},
		{"blank braille", "\u2800\u2800", false},
		{"combining marks alone", "\u0301\u0308", false},
		{"combining grapheme joiner", "\u034f", false},
		{"controls", "\t\r\n\x01\x7f\u0085", false},
		{"line and paragraph separators", "\u2028\u2029", false},
		{"private use", "\ue000\U000F0000", false},
		{"unassigned", "\U0003FFFD", false},
		{"mixture of invisibles", "\u202e\u200b \u2066\ufeff\u3164\u2069", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Has(tc.in); got != tc.want {
				t.Errorf("Has(%+q): got %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}
