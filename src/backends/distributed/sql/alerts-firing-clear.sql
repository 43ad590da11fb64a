-- An alert's resolution was announced. $1 alert.
DELETE FROM alerts_firing WHERE alert = $1
