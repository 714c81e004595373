"""Work the schedule creates: notification jobs for due reminders and expiring memberships."""
