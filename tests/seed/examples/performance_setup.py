from rfobs import benchmark, load_test, LoadTestConfig

async def run_performance_tests():
    # Benchmark a function
    result = await benchmark(my_agent_function, iterations=1000)
    print(f"Agent performance: {result.operations_per_second:.2f} ops/sec")
    
    # Load test an endpoint
    async def api_call():
        async with httpx.AsyncClient() as client:
            response = await client.get("http://localhost:3001/health")
            return response.status_code
    
    load_result = await load_test(api_call, LoadTestConfig(
        concurrent_users=50,
        total_requests=1000,
        ramp_up_duration=10.0
    ))
    
    print(f"Load test: {load_result['throughput_rps']:.2f} req/sec")
