// Package phone normalises the phone numbers the server and the legal desk accept, so
// that a number registered and a number named in a court order compare equal.
//
// It protects nothing by itself: it only decides which spellings are one number.
package phone

import (
	"errors"

	"github.com/nyaruka/phonenumbers"
)

// Normalise returns s in E.164 form ("+14155550100"), or an error if s is not a valid
// number in international form (a leading + is required: there is no default region).
func Normalise(s string) (string, error) {
	// Longer than any E.164 number with spaces and punctuation: refused before parsing,
	// so a peer cannot make the parser work through a long string.
	if len(s) > 32 {
		return "", errors.New("too long")
	}
	n, err := phonenumbers.Parse(s, "ZZ") // "ZZ": no default region, a leading + is required
	if err != nil {
		return "", err
	}
	if !phonenumbers.IsValidNumber(n) {
		return "", errors.New("not a valid number")
	}
	return phonenumbers.Format(n, phonenumbers.E164), nil
}
