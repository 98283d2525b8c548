//! A Pod's life: SIGTERM, deadlines, second signals and kill -9 (`termination`); Jobs
//! (`exit_when_file`) and volumes with a size limit (`delete_after_ship`) in
//! `jobs_and_volumes`.

mod jobs_and_volumes;
mod termination;
