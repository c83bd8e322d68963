package legal

import (
	"crypto/ed25519"
	"errors"
	"time"
)

// PackageVersion is the disclosure package format's version.
const PackageVersion = 1

// Package is a disclosure package: the answer to one order. Per target it holds only the
// phone number (and whether an account is registered with it) and the connection-log
// entries inside the retention window. It is serialised as indented JSON and signed as
// those exact bytes (a detached Ed25519 signature), so that it reads well on paper and
// verifies byte for byte.
type Package struct {
	Version             int             `json:"version"`
	OrderReference      string          `json:"order_reference"` // the case reference of the order
	OrderSHA256         string          `json:"order_sha256"`    // as in the public legal log
	IssuingAuthority    string          `json:"issuing_authority"`
	GeneratedAt         time.Time       `json:"generated_at"`
	RetentionDays       int             `json:"retention_days"` // the connection log's window
	CategoriesDisclosed []string        `json:"categories_disclosed"`
	CategoriesNotHeld   []string        `json:"categories_not_given"` // not held, or held but not disclosable
	Targets             []PackageTarget `json:"targets"`
}

// PackageTarget is what a package holds about one target.
type PackageTarget struct {
	PhoneNumber string              `json:"phone_number"`
	Registered  bool                `json:"registered"`
	Connections []PackageConnection `json:"connections"`
}

// PackageConnection is one connection-log entry.
type PackageConnection struct {
	IP        string    `json:"ip"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
}

// VerifyPackage checks a detached package signature against the server's public key.
func VerifyPackage(pub ed25519.PublicKey, pkg, sig []byte) error {
	if len(pub) != ed25519.PublicKeySize {
		return errors.New("public key is not 32 bytes")
	}
	if !ed25519.Verify(pub, pkg, sig) {
		return errors.New("signature does not verify: the package was altered or signed by another key")
	}
	return nil
}
