package webhook_test

import "folio/internal/notify/notifytest"

const secret = notifytest.Secret
