package server

import (
	"sync"

	"github.com/google/uuid"
)

// Notifier carries "an envelope is waiting for device D" wake-ups from a send to the
// connections of D. The in-process [LocalNotifier] serves one node; a NATS one serves
// several (issue 7). A wake carries no sender and no content.
type Notifier interface {
	// Notify wakes every subscriber of (account, device). It must not block.
	Notify(account uuid.UUID, device uint32)
	// Subscribe calls wake on every Notify for (account, device) until cancel is called.
	// wake must not block.
	Subscribe(account uuid.UUID, device uint32, wake func()) (cancel func())
}

var _ Notifier = (*LocalNotifier)(nil)

// LocalNotifier is a [Notifier] within one process.
type LocalNotifier struct {
	mu   sync.Mutex
	subs map[deviceKey]map[*subscription]struct{}
}

type deviceKey struct {
	account uuid.UUID
	device  uint32
}

type subscription struct{ wake func() }

// NewLocalNotifier returns an empty in-process notifier.
func NewLocalNotifier() *LocalNotifier {
	return &LocalNotifier{subs: make(map[deviceKey]map[*subscription]struct{})}
}

// Notify wakes (account, device)'s subscribers.
func (n *LocalNotifier) Notify(account uuid.UUID, device uint32) {
	k := deviceKey{account, device}
	n.mu.Lock()
	subs := make([]*subscription, 0, len(n.subs[k]))
	for s := range n.subs[k] {
		subs = append(subs, s)
	}
	n.mu.Unlock()
	for _, s := range subs {
		s.wake()
	}
}

// Subscribe registers wake for (account, device).
func (n *LocalNotifier) Subscribe(account uuid.UUID, device uint32, wake func()) func() {
	k := deviceKey{account, device}
	s := &subscription{wake: wake}
	n.mu.Lock()
	if n.subs[k] == nil {
		n.subs[k] = make(map[*subscription]struct{})
	}
	n.subs[k][s] = struct{}{}
	n.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			n.mu.Lock()
			delete(n.subs[k], s)
			if len(n.subs[k]) == 0 {
				delete(n.subs, k)
			}
			n.mu.Unlock()
		})
	}
}
