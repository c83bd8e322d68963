package protocol

import (
	"fmt"
	"strconv"
)

// Address names one device of one account: libsignal's ProtocolAddress. Name is the
// account's service id (a UUID string, libsignal's ACI), never a phone number.
type Address struct {
	Name     string
	DeviceID uint32
}

// String returns "name.device", the form libsignal prints.
func (a Address) String() string { return a.Name + "." + strconv.FormatUint(uint64(a.DeviceID), 10) }

// Validate reports whether a can address a device: a non-empty name and a device id
// of at least 1 (libsignal's device ids start at 1).
func (a Address) Validate() error {
	if a.Name == "" {
		return fmt.Errorf("address: empty name")
	}
	if a.DeviceID == 0 {
		return fmt.Errorf("address %s: device id 0", a.Name)
	}
	return nil
}
