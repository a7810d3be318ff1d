package store

// settingDefaultWorkflow names the workshop workflow that opens for a
// participant by default (its file name), written by the admin API and
// read by the participants' surface.
const settingDefaultWorkflow = "default_workflow"

// DefaultWorkflow returns the workshop workflow marked to open by default,
// or "".
func (tx *Tx) DefaultWorkflow() (string, error) {
	var name string
	_, err := tx.Setting(settingDefaultWorkflow, &name)
	return name, err
}

// PutDefaultWorkflow marks a workshop workflow to open by default; ""
// clears the mark.
func (tx *Tx) PutDefaultWorkflow(name string) error {
	return tx.PutSetting(settingDefaultWorkflow, name)
}
