#!/usr/bin/env python3
"""Production Agent with All Enhancements"""

import asyncio
from rfobs import (
    # Core infrastructure
    setup_structured_logging,
    validate_startup_environment,
    load_config,
    
    # Performance & reliability
    track_agent_task,
    retry_api_call,
    timeout_api_call,
    rate_limit_api_calls,
    
    # Monitoring
    get_metrics_collector,
    get_advanced_health_checker
)

async def main():
    # 1. Validate environment
    if not validate_startup_environment():
        exit(1)
    
    # 2. Load configuration
    config = load_config("production")
    
    # 3. Setup logging
    setup_structured_logging(
        level=config.logging.level,
        json_format=(config.logging.format == "json")
    )
    
    # 4. Start metrics server
    metrics = get_metrics_collector()
    metrics.start_http_server(config.metrics.prometheus_port)
    
    # 5. Define production-ready agent task
    @track_agent_task("ProductionAgent", "data_processing")
    @retry_api_call(max_attempts=3, base_delay=1.0)
    @timeout_api_call(60.0)
    @rate_limit_api_calls(requests_per_second=10.0)
    async def process_data(data_id: str):
        # Agent implementation here
        await asyncio.sleep(0.1)  # Simulate work
        return f"Processed {data_id}"
    
    # 6. Run health checks
    health_checker = get_advanced_health_checker()
    health = await health_checker.check_all()
    print(f"System health: {health.status.value}")
    
    # 7. Execute agent tasks
    results = await asyncio.gather(*[
        process_data(f"data-{i}")
        for i in range(10)
    ])
    
    print(f"Processed {len(results)} items")

if __name__ == "__main__":
    asyncio.run(main())
