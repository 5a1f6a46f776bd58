package containers

import (
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/layerlab/layerlab/drivers"
)

// Rename gives the container id the name newName, in one transaction
// that moves its entry in the name index, with dockerd's refusals: an
// empty or invalid name or the current one (ErrInvalidArgument), a name
// another container holds (ErrNameConflict).
func (s *Store) Rename(id, newName string) error {
	if newName == "" || newName == "/" {
		return fmt.Errorf("Neither old nor new names may be empty: %w", drivers.ErrInvalidArgument)
	}
	if !validName.MatchString(newName) {
		return fmt.Errorf("Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed: %w", newName, drivers.ErrInvalidArgument)
	}
	newName = strings.TrimPrefix(newName, "/")
	return s.group.Update(s.db, func(tx *bolt.Tx) error {
		r, err := get(tx, id)
		if err != nil {
			return err
		}
		if r.Name == newName {
			return fmt.Errorf("Renaming a container with the same name as its current name: %w", drivers.ErrInvalidArgument)
		}
		names := tx.Bucket(bucketNames)
		if other := names.Get([]byte(newName)); other != nil {
			return fmt.Errorf(`Error when allocating new name: Conflict. The container name "/%s" is already in use by container "%s". You have to remove (or rename) that container to be able to reuse that name: %w`, newName, other, ErrNameConflict)
		}
		if err := names.Delete([]byte(r.Name)); err != nil {
			return err
		}
		if err := names.Put([]byte(newName), []byte(r.ID)); err != nil {
			return err
		}
		r.Name = newName
		return put(tx, &r)
	})
}
