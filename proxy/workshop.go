package proxy

import (
	"encoding/json"
	"net/url"
	"strconv"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	workshop "github.com/comfy-workshop/workshop"
	"github.com/comfy-workshop/workshop/store"
)

// meFor is what the workshop extension shows: seat, queue place, GPUs,
// announcements.
func (p *Proxy) meFor(user string) (meView, error) {
	return p.meWith(user, p.standing(user))
}

// meWith is meFor with the standing already known.
func (p *Proxy) meWith(user string, st standing) (meView, error) {
	n, ok := workshop.SeatOf(user)
	if !ok {
		return meView{}, workshop.Errorf(workshop.ENOTFOUND, "no seat for %s", user)
	}
	seat, err := p.cfg.Seats.Get(n)
	if err != nil {
		return meView{}, err
	}
	var notes []workshop.Announcement
	var def string
	p.cfg.DB.View(func(tx *store.Tx) (err error) {
		if notes, err = tx.Announcements(); err != nil {
			return err
		}
		def, err = tx.DefaultWorkflow()
		return err
	})
	if notes == nil {
		notes = []workshop.Announcement{}
	}
	if def != "" && (p.cfg.Workflows == nil || !p.cfg.Workflows.HasWorkshopWorkflow(def)) {
		def = "" // withdrawn since
	}
	return meView{statusView: st.view(), Seat: n, UserID: user, Name: seat.Name, Announcements: notes, DefaultWorkflow: def}, nil
}

// meView is GET /workshop/me and the first workshop_status of a socket.
type meView struct {
	statusView
	Seat          int                     `json:"seat"`
	UserID        string                  `json:"user_id"`
	Name          string                  `json:"name"`
	Announcements []workshop.Announcement `json:"announcements"`
	// DefaultWorkflow is the workshop workflow (a file name in
	// workflows/workshop/) the instructor wants a new page to open.
	DefaultWorkflow string `json:"default_workflow,omitempty"`
}

// standing is user's standing now: their place from the queue, the GPUs
// from the room's snapshot (a second old at most after a change) once there
// is one, as counting them walks every instance's status.
func (p *Proxy) standing(user string) standing {
	g, ok := p.room.gpusNow()
	if !ok {
		g = p.gpuCount()
	}
	return standingOf(p.cfg.Queue.Place(user), p.cfg.Queue.Paused(), g)
}

func (p *Proxy) me(c *fiber.Ctx) error {
	me, err := p.meFor(userOf(c))
	if err != nil {
		return err
	}
	return c.JSON(me)
}

// outputsOf lists a finished job's files as the extension shows them.
func outputsOf(user string, j *workshop.Job) []map[string]any {
	n, _ := workshop.SeatOf(user)
	var out []map[string]any
	if j.Result == nil {
		return out
	}
	for _, o := range j.Result.Outputs {
		q := url.Values{"filename": {o.Name}, "subfolder": {j.ID}, "type": {"output"}}
		created := j.CreatedAt
		if j.CompletedAt != nil {
			created = *j.CompletedAt
		}
		out = append(out, map[string]any{
			"job_id": j.ID, "filename": o.Name, "type": "output", "size": o.Size,
			"mime": store.ContentType(o.Name), "created_at": created,
			"url": "/user/" + strconv.Itoa(n) + "/api/view?" + q.Encode(),
		})
	}
	return out
}

// outputs is GET /workshop/outputs?limit=&before=: the outputs of the
// participant's completed jobs, newest first, whole jobs until at least
// limit files, read a page of jobs at a time from their index; "next"
// names the last job listed when older ones remain (before=next goes on).
func (p *Proxy) outputs(c *fiber.Ctx) error {
	user := userOf(c)
	limit := min(max(c.QueryInt("limit", 100), 1), 1000)
	before := c.Query("before")
	if _, err := uuid.Parse(before); before != "" && err != nil {
		return workshop.Errorf(workshop.EINVALID, "before %q is not a job id", before)
	}
	match := func(e store.UserJob) bool {
		return e.Status == workshop.StatusCompleted && (before == "" || e.ID < before) // ids sort by time
	}
	out := []map[string]any{}
	last, next := "", ""
pages:
	for offset := 0; ; offset += outputsPage {
		jobs, total, err := p.cfg.Queue.UserJobs(store.UserJobsQuery{UserID: user, Match: match, Offset: offset, Limit: outputsPage})
		if err != nil {
			return err
		}
		for _, j := range jobs {
			if len(out) >= limit {
				next = last
				break pages
			}
			out = append(out, outputsOf(user, j)...)
			last = j.ID
		}
		if offset+len(jobs) >= total {
			break
		}
	}
	res := fiber.Map{"outputs": out}
	if next != "" {
		res["next"] = next
	}
	return c.JSON(res)
}

// outputsPage is how many jobs one read of /workshop/outputs takes.
const outputsPage = 50

// extensions is the GPU host's extension list plus the workshop extension.
func (p *Proxy) extensions(c *fiber.Ctx) error {
	var list []string
	if p.cfg.Mirror != nil {
		if raw, err := p.cfg.Mirror.Get(c.UserContext(), "/api/extensions"); err == nil {
			json.Unmarshal(raw, &list)
		}
	}
	if p.cfg.ExtensionPath != "" {
		list = append(list, p.cfg.ExtensionPath)
	}
	if list == nil {
		list = []string{}
	}
	return c.JSON(list)
}

type gpus struct{ connected, total int }

// gpuCount counts the GPU instances participants' jobs can use now.
func (p *Proxy) gpuCount() gpus {
	var g gpus
	if p.cfg.Workers == nil {
		return g
	}
	for _, w := range p.cfg.Workers() {
		g.total++
		if w.TakesJobs() {
			g.connected++
		}
	}
	return g
}
