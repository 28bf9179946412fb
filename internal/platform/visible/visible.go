// Package visible tells text a reader can see from text that only seems present:
// zero-width characters, bidi marks, embeddings, overrides and isolates, and other
// format or non-graphic characters display as nothing, yet pass a "required" check.
package visible

import "unicode"

// Rule is what a field made only of invisible characters is told, in a 422.
const Rule = "must contain a visible character, not only spaces, zero-width or bidi control characters"

// Has reports whether s holds at least one character a reader can see: a letter,
// number, punctuation mark or symbol (or a space-less mark on one) that is not
// default-ignorable. Spaces, controls, format characters (Cf: zero-width spaces and
// joiners, bidi controls, soft hyphens, tags), variation selectors, the Hangul
// fillers, the blank Braille pattern, private-use and unassigned code points, and
// combining marks with no base are not.
func Has(s string) bool {
	for _, r := range s {
		if Is(r) {
			return true
		}
	}
	return false
}

// Is reports whether r is a character a reader can see on its own (see Has).
func Is(r rune) bool {
	switch {
	case !unicode.In(r, unicode.L, unicode.N, unicode.P, unicode.S):
		// Controls, format characters, spaces, separators, marks, private use,
		// surrogates and unassigned code points.
		return false
	case unicode.In(r, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector, unicode.White_Space):
		// The Hangul fillers are letters that render as nothing.
		return false
	case r == '\u2800':
		// BRAILLE PATTERN BLANK: a symbol, and a favourite blank name.
		return false
	}
	return true
}
