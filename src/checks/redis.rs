// STUB: replaced by the real module.
#![allow(missing_docs, unused)]
use super::*;
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct RedisConfig {}
pub struct RedisCheck;
impl Check for RedisCheck {
    type Config = RedisConfig;
    const KIND: &'static str = "redis";
    const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
    fn build(config: &Self::Config) -> Result<Self, BuildError> {
        Ok(RedisCheck)
    }
    fn target(&self) -> String {
        String::new()
    }
    async fn run(&self, ctx: &RunContext, rec: &mut Recorder) -> Result<(), CheckError> {
        Err(CheckError::new(Reason::Internal, "not implemented"))
    }
}
