package api

import (
	"encoding/json"
	"time"

	"github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/sched"
)

// eventsSocket streams queue events to an admin client: first the queue's
// status, then every change as it happens.
func (s *Server) eventsSocket(c *fiber.Ctx) error {
	if !websocket.IsWebSocketUpgrade(c) {
		return workshop.Errorf(workshop.EINVALID, "GET /ws must be a WebSocket upgrade")
	}
	return websocket.New(func(conn *websocket.Conn) {
		// Subscribe before sending the snapshot so no change falls between.
		sub := s.cfg.Queue.Events().Subscribe(1024, func(e sched.Event) bool { return e.Type != sched.EventEngine })
		defer sub.Close()
		st := s.cfg.Queue.Status()
		if err := writeJSON(conn, sched.Event{Type: sched.EventQueueChanged, Queue: &st}); err != nil {
			return
		}
		// The reader notices the client going away; the client sends nothing
		// we need.
		gone := make(chan struct{})
		go func() {
			defer close(gone)
			for {
				if _, _, err := conn.ReadMessage(); err != nil {
					return
				}
			}
		}()
		// The library reuses the Conn once this returns: the reader must be
		// done with it first. (Close does nothing on a hijacked connection
		// until then; a deadline ends the read.)
		defer func() { conn.SetReadDeadline(time.Now()); <-gone }()
		ping := time.NewTicker(30 * time.Second)
		defer ping.Stop()
		for {
			select {
			case e, ok := <-sub.C:
				if !ok {
					// Too slow to keep up: close so the client reconnects and reloads.
					conn.WriteControl(websocket.CloseMessage,
						websocket.FormatCloseMessage(websocket.CloseTryAgainLater, "too slow: reconnect"), time.Now().Add(time.Second))
					return
				}
				if err := writeJSON(conn, e); err != nil {
					return
				}
			case <-ping.C:
				if err := conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(10*time.Second)); err != nil {
					return
				}
			case <-gone:
				return
			}
		}
	})(c)
}

func writeJSON(conn *websocket.Conn, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return conn.WriteMessage(websocket.TextMessage, b)
}
