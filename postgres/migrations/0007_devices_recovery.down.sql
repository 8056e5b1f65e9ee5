DROP TABLE recovery_requests;
DROP TABLE devices;
