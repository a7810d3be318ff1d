package api

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/gofiber/fiber/v2"
	qrcode "github.com/skip2/go-qrcode"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/store"
)

// The QR sheet's own text: a title, the room's Wi-Fi and a few lines of
// instructions, printed on every card. Kept in the store so the instructor
// types them once, not before every print.

const settingSheet = "print_sheet"

type sheet struct {
	Title        string `json:"title"`
	WiFiName     string `json:"wifi_name"`
	WiFiPassword string `json:"wifi_password"`
	Instructions string `json:"instructions"`
}

// sheetLimits are the longest values that still fit a card.
var sheetLimits = map[string]int{"title": 80, "wifi_name": 32, "wifi_password": 63, "instructions": 400}

func (s *Server) loadSheet() (sheet, error) {
	var sh sheet
	err := s.cfg.DB.View(func(tx *store.Tx) error {
		_, err := tx.Setting(settingSheet, &sh)
		return err
	})
	return sh, err
}

func (s *Server) getSheet(c *fiber.Ctx) error {
	sh, err := s.loadSheet()
	if err != nil {
		return err
	}
	return c.JSON(sh)
}

// putSheet replaces the sheet's text; every field is checked before any is
// stored.
func (s *Server) putSheet(c *fiber.Ctx) error {
	var sh sheet
	dec := json.NewDecoder(bytes.NewReader(c.Body()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sh); err != nil {
		return workshop.Errorf(workshop.EINVALID, `the body must be {"title", "wifi_name", "wifi_password", "instructions"}: %v`, jsonProblem(err))
	}
	for name, v := range map[string]*string{"title": &sh.Title, "wifi_name": &sh.WiFiName, "wifi_password": &sh.WiFiPassword, "instructions": &sh.Instructions} {
		if name != "wifi_password" {
			*v = strings.TrimSpace(*v)
		}
		if n := len([]rune(*v)); n > sheetLimits[name] {
			return workshop.Errorf(workshop.EINVALID, "%s is %d characters; at most %d fit on a card", name, n, sheetLimits[name])
		}
		text := *v
		if name == "instructions" {
			text = strings.ReplaceAll(text, "\n", "") // lines are allowed there
		}
		if !workshop.SafeText(text) {
			return workshop.Errorf(workshop.EINVALID, "%s holds a control character", name)
		}
	}
	if sh.WiFiPassword != "" && sh.WiFiName == "" {
		return workshop.Errorf(workshop.EINVALID, "a Wi-Fi password needs the network's name")
	}
	if err := s.cfg.DB.Write(c.UserContext(), func(tx *store.Tx) error { return tx.PutSetting(settingSheet, sh) }); err != nil {
		return err
	}
	return c.JSON(sh)
}

// wifiQR is the code phones read to join the room's Wi-Fi (the WIFI: form
// camera apps understand).
func (s *Server) wifiQR(c *fiber.Ctx) error {
	sh, err := s.loadSheet()
	if err != nil {
		return err
	}
	if sh.WiFiName == "" {
		return workshop.Errorf(workshop.ENOTFOUND, "no Wi-Fi network is set for the sheet")
	}
	png, err := qrcode.Encode(wifiURI(sh.WiFiName, sh.WiFiPassword), qrcode.Medium, 320)
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Type("png").Send(png)
}

func wifiURI(name, password string) string {
	esc := strings.NewReplacer(`\`, `\\`, `;`, `\;`, `,`, `\,`, `:`, `\:`, `"`, `\"`)
	if password == "" {
		return "WIFI:T:nopass;S:" + esc.Replace(name) + ";;"
	}
	return "WIFI:T:WPA;S:" + esc.Replace(name) + ";P:" + esc.Replace(password) + ";;"
}
