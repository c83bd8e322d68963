package api

// Key transparency (docs/key-transparency.md). The log's checkpoint is a signed note
// (golang.org/x/mod/sumdb/note) served as text at GET /v1/kt/checkpoint; entries are the
// binary encoding of package kt; hashes are 32-byte RFC 6962 hashes in base64.

// KTKeys is the answer to GET /v1/kt/keys: what a client or auditor needs to verify the
// log. A client pins both on first use (or gets them out of band) and never takes new
// ones from the server silently.
type KTKeys struct {
	// LogKey is the note verifier key of the log ("<origin>+<hash>+<key>"); the origin
	// line of every checkpoint equals its name.
	LogKey string `json:"log_key"`
	// VRFKey is the 32-byte ECVRF-EDWARDS25519-SHA512-TAI public key lookup indexes are
	// proved under.
	VRFKey []byte `json:"vrf_key"`
}

// KTInclusionProof is the answer to GET /v1/kt/inclusion?index=I&size=N: the proof that
// entry I is in the tree of size N.
type KTInclusionProof struct {
	Index int64    `json:"index"`
	Size  int64    `json:"size"`
	Proof [][]byte `json:"proof"`
}

// KTConsistencyProof is the answer to GET /v1/kt/consistency?old=M&new=N: the proof that
// the tree of size M is a prefix of the tree of size N.
type KTConsistencyProof struct {
	Old   int64    `json:"old"`
	New   int64    `json:"new"`
	Proof [][]byte `json:"proof"`
}

// KTEntries is the answer to GET /v1/kt/entries?start=S&end=E: the entries S <= i < E.
type KTEntries struct {
	Start   int64    `json:"start"`
	Entries [][]byte `json:"entries"`
}

// KTBinding points at the log entry that binds a device to its identity key, in a bundle
// (DeviceBundle.KT). The client checks that Entry is a device binding for this account,
// device and identity key, then fetches an inclusion proof for LogIndex under a
// checkpoint it verified.
type KTBinding struct {
	LogIndex int64  `json:"log_index"`
	Entry    []byte `json:"entry"`
}

// KTLookup is the key transparency part of a directory answer (LookupResponse.KT): the
// VRF proof for the number, from which the client computes the lookup index itself, and
// the log entry that binds that index to the account.
type KTLookup struct {
	VRFProof []byte `json:"vrf_proof"`
	LogIndex int64  `json:"log_index"`
	Entry    []byte `json:"entry"`
}

// KTAccount is the answer to GET /v1/kt/account/{account} (auth): the current binding
// of every device of an account, without the prekeys a bundle would consume. A client
// checks a contact's changed identity key with it before trusting it.
type KTAccount struct {
	IdentityKey []byte            `json:"identity_key"`
	Devices     []KTDeviceBinding `json:"devices"`
}

// KTDeviceBinding is one device's binding in [KTAccount].
type KTDeviceBinding struct {
	DeviceID uint32 `json:"device_id"`
	KTBinding
}
