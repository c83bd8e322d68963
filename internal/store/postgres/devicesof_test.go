package postgres

import (
	"testing"

	"github.com/bastionchat/bastion/internal/store/storetest"
)

func TestDevicesOf(t *testing.T) {
	t.Parallel()
	storetest.RunDevicesOf(t, open(t))
}
