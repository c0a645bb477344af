//! The Conclave operator: controllers for MediaPool, MediaNode and Conference.
