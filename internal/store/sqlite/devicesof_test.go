package sqlite

import (
	"testing"

	"github.com/bastionchat/bastion/internal/store/storetest"
)

func TestDevicesOf(t *testing.T) {
	t.Parallel()
	if devicesOfChunk >= 300 {
		t.Fatalf("devicesOfChunk = %d: the suite's 300 accounts no longer span two queries", devicesOfChunk)
	}
	s := openTemp(t)
	defer s.Close()
	storetest.RunDevicesOf(t, s)
}
